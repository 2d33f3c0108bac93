"""The deployer's exceptions, all rooted at DeployerError; the CLI turns each into one line and a non-zero exit.

    DeployerError
     ├── ConfigError              missing or contradictory settings (apihost, auth, wskprops)
     ├── ManifestError            a manifest or deployment file is malformed
     ├── DockerUnavailable        deployer.runtime_image: no docker client or engine
     ├── RuntimeBuildError        deployer.runtime_image: a step of the image build failed
     ├── SupervisorError          deployer.local.supervisor: the platform cannot be started or stopped
     ├── BenchError               deployer.bench.infer: a path of the benchmark failed
     ├── UploadError              deployer.web: a picture sent to the page is unusable
     ├── ContainerError           deployer.local.container: an action container failed or broke the contract
     │    ├── ContainerTimeout
     │    └── ContainerOutOfMemory
     └── PlatformError            deployer.local.errors: what the local platform answers as an HTTP status
          ├── BadRequest (400), Unauthorized (401), Forbidden (403), NotFound (404), Conflict (409),
          │   TooLarge (413)
          └── StorageStartError   deployer.local.s3: the embedded S3 did not start

The OpenWhisk client's errors are mlcore's (the client is mlcore.openwhisk, which actions
bundle too) and are re-exported here under their names:

    mlcore.errors.MLCoreError
     └── OpenWhiskError           the API answered an error (.status, .body)
          ├── AuthError, NotFoundError, ConflictError, PayloadTooLargeError, UnreachableError
          └── ActivationFailedError   the action ran and answered an error (.activation_id, .result, .activation)
"""

from __future__ import annotations

from mlcore.errors import (
    ActivationFailedError,
    AuthError,
    ConflictError,
    NotFoundError,
    OpenWhiskError,
    PayloadTooLargeError,
    UnreachableError,
)

__all__ = [
    "DeployerError",
    "ConfigError",
    "ManifestError",
    "OpenWhiskError",
    "AuthError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnreachableError",
    "ActivationFailedError",
]


class DeployerError(Exception):
    """Base of every error the deployer raises for a user to read."""


class ConfigError(DeployerError):
    """Missing or contradictory settings (apihost, auth, wskprops)."""


class ManifestError(DeployerError):
    """A manifest or deployment file is malformed; the message names file and line."""
