"""The local platform's exceptions, all rooted at LocalWhiskError; its callers turn each into one line.

LocalWhiskError
 ├── PlatformError            what the controller answers as an HTTP status (`status`), as OpenWhisk's JSON
 │    ├── BadRequest (400), Unauthorized (401), Forbidden (403), NotFound (404), Conflict (409),
 │    │   TooLarge (413),
 │    │   TooManyRequests (429)
 │    └── StorageStartError   localwhisk.s3: the embedded S3 did not start
 ├── SupervisorError          localwhisk.supervisor: the platform cannot be started or stopped
 ├── ContainerError           localwhisk.invoker.container: an action container failed or broke the contract
 │    ├── ContainerTimeout
 │    └── ContainerOutOfMemory
 ├── DockerUnavailable        localwhisk.invoker.docker_cli: no docker client or engine
 └── RuntimeBuildError        localwhisk.invoker.docker_cli: a docker command failed
"""


class LocalWhiskError(Exception):
    """Base of every error the local platform raises for a user to read."""


class PlatformError(LocalWhiskError):
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


class TooManyRequests(PlatformError):
    """A throttle refused the invoke before it made an activation: OpenWhisk's RejectRequest(TooManyRequests)."""

    status = 429
