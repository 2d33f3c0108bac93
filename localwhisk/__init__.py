"""The local OpenWhisk-compatible platform: controller, invoker, store, embedded S3."""
