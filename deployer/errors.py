"""The deployer's exceptions; the CLI turns each into one line and a non-zero exit."""

from __future__ import annotations


class DeployerError(Exception):
    """Base of every error the deployer raises for a user to read."""


class ConfigError(DeployerError):
    """Missing or contradictory settings (apihost, auth, wskprops)."""


class ManifestError(DeployerError):
    """A manifest or deployment file is malformed; the message names file and line."""


class OpenWhiskError(DeployerError):
    """The OpenWhisk API answered an error."""

    def __init__(self, message: str, status: int | None = None, body: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class AuthError(OpenWhiskError):
    pass


class NotFoundError(OpenWhiskError):
    pass


class ConflictError(OpenWhiskError):
    pass


class PayloadTooLargeError(OpenWhiskError):
    pass


class UnreachableError(OpenWhiskError):
    """No answer from the API host at all."""


class ActivationFailedError(OpenWhiskError):
    """The action ran and answered an error (application or developer error)."""

    def __init__(self, message: str, activation_id: str | None, result: dict, activation: dict | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, status, result)
        self.activation_id = activation_id
        self.result = result
        self.activation = activation
