"""Errors the controller turns into OpenWhisk's JSON error bodies and status codes (`status`)."""

from ..errors import DeployerError


class PlatformError(DeployerError):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(PlatformError):
    status = 400


class Unauthorized(PlatformError):
    status = 401


class Forbidden(PlatformError):
    status = 403


class NotFound(PlatformError):
    status = 404

    def __init__(self, message: str = "The requested resource does not exist.") -> None:
        super().__init__(message)


class Conflict(PlatformError):
    status = 409


class TooLarge(PlatformError):
    status = 413
