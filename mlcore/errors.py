"""The one root exception of mlcore, so callers can catch everything it raises."""


class MLCoreError(Exception):
    """Base of every error raised by mlcore."""


class DatasetMissingError(MLCoreError):
    """A dataset is not where it should be; the message names the command that fetches it."""


class StorageError(MLCoreError):
    """Object storage failed or refused a request."""


class ObjectNotFoundError(StorageError):
    """The requested key (or bucket) does not exist."""
