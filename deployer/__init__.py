"""The deployer: CLI, OpenWhisk REST client, manifests, the local platform and benchmarks."""
