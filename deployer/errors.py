"""The deployer's exceptions, all rooted at DeployerError; the CLI turns each into one line and a non-zero exit.

    DeployerError
     ├── ConfigError              missing or contradictory settings (apihost, auth, wskprops)
     ├── ManifestError            a manifest or deployment file is malformed
     └── UploadError              deployer.web: a picture sent to the page is unusable

The other packages keep their own roots, which the CLI turns into one line as well:
localwhisk.errors.LocalWhiskError (the local platform: its HTTP answers, the supervisor,
containers, Docker), embedded_s3.errors.EmbeddedS3Error, fedavg's, hostnet's, mlcore's and
studies.errors.StudyError (the studies and benchmarks).

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
