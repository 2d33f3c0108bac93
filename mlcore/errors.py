"""The one root exception of mlcore, so callers can catch everything it raises.

    MLCoreError
     ├── DatasetMissingError        a dataset is not where it should be
     ├── StorageError               object storage failed or refused a request
     │    └── ObjectNotFoundError   the key (or bucket) does not exist
     ├── OpenWhiskError             the OpenWhisk API answered an error (.status, .body)
     │    ├── AuthError             401/403, or an auth key not shaped 'uuid:key'
     │    ├── NotFoundError         404
     │    ├── ConflictError         409
     │    ├── PayloadTooLargeError  413
     │    ├── UnreachableError      no answer at all: refused, reset, timed out
     │    └── ActivationFailedError the action ran and answered an error (.activation_id, .result, .activation)
     ├── DamagedError               mlcore.weights: stored weights are cut short, flipped or in no known format
     ├── TrainingError              mlcore.training.job: training failed or cannot run these settings
     ├── PreprocessError            mlcore.preprocess: the bytes are not a usable digit picture
     ├── ModelNotFoundError         mlcore.inference: no model is published under that version
     ├── ModelCorruptError          mlcore.inference: a stored checkpoint fails its sha256 or does not load
     ├── FetchError                 mlcore.fetch: a URL is not allowed or could not be fetched
     └── FontsMissingError          mlcore.printed: none of the fonts the score needs is installed

The OpenWhisk errors are raised by mlcore.openwhisk.OpenWhiskClient, which the deployer,
fedavg and the actions share; deployer.errors re-exports them under the same names.
"""

from __future__ import annotations


class MLCoreError(Exception):
    """Base of every error raised by mlcore."""


class DatasetMissingError(MLCoreError):
    """A dataset is not where it should be; the message names the command that fetches it."""


class StorageError(MLCoreError):
    """Object storage failed or refused a request."""


class ObjectNotFoundError(StorageError):
    """The requested key (or bucket) does not exist."""


class DamagedError(MLCoreError):
    """Stored weights are not whole (cut short, flipped) or in no format mlcore writes; the message names where."""


class OpenWhiskError(MLCoreError):
    """The OpenWhisk API answered an error; `status` is its HTTP status where there was one."""

    def __init__(self, message: str, status: int | None = None, body: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class AuthError(OpenWhiskError):
    """The API refused the credentials (401/403), or the key is not shaped 'uuid:key'."""


class NotFoundError(OpenWhiskError):
    """The entity (action, package, activation, ...) does not exist (404)."""


class ConflictError(OpenWhiskError):
    """The entity exists and overwrite was off (409)."""


class PayloadTooLargeError(OpenWhiskError):
    """The request (parameters, code) is over the platform's limit (413)."""


class UnreachableError(OpenWhiskError):
    """No answer from the API host at all (refused, reset, or no answer within the timeout)."""


class ActivationFailedError(OpenWhiskError):
    """The action ran and answered an error (application or developer error).

    `result` is what the action answered, `activation` its whole record where known (a
    blocking invoke asked for the result only has none).
    """

    def __init__(
        self,
        message: str,
        activation_id: str | None,
        result: dict,
        activation: dict | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, status, result)
        self.activation_id = activation_id
        self.result = result
        self.activation = activation
