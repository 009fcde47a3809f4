"""Errors of the domain and the API, each carrying Nova's HTTP status and message.

The API layer turns any NovaError into Nova's fault body (see novalite.api.faults); nothing else
needs to know about HTTP.
"""

from __future__ import annotations


class NovaError(Exception):
    """An error with the status code and message Nova returns for it."""

    code = 500

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(NovaError):
    code = 400


class Unauthorized(NovaError):
    code = 401


class Forbidden(NovaError):
    code = 403


class NotFound(NovaError):
    code = 404


class Conflict(NovaError):
    code = 409


class NotAcceptable(NovaError):
    code = 406


class UnsupportedMediaType(NovaError):
    code = 415


class ServiceUnavailable(NovaError):
    code = 503


class PolicyNotAuthorized(Forbidden):
    def __init__(self, action: str):
        super().__init__(f"Policy doesn't allow {action} to be performed.")


class NoValidHost(NovaError):
    """The scheduler found nowhere to put a server (Nova's NoValidHost; a 500 with Nova's message)."""

    def __init__(self, reason: str):
        super().__init__(f"No valid host was found. {reason}")
        self.reason = reason
