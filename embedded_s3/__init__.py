"""The embedded S3: an S3-compatible object server over a folder, durable, authenticated with Signature V4.

Run as `python -m embedded_s3 --root DIR --credentials FILE --port N`: it prints one JSON
line with its port and pid once it listens. The local platform starts it as its own
process (`localwhisk.s3.EmbeddedS3`); nothing else depends on what is inside.

    app.py       the S3 REST API as a WSGI application (routing, operations, XML)
    store.py     objects, buckets and multipart uploads on disk (atomic, fsync'd writes)
    sigv4.py     Signature V4: headers, presigned URLs, chunk signatures
    chunked.py   aws-chunked bodies (signed chunks, trailing checksums)
    checksums.py Content-MD5 and the x-amz-checksum-* algorithms
    server.py    the process: HTTP with deadlines (runtimes.wsgiserver), credentials, signals
"""
