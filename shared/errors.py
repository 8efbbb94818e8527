"""Refusals a domain can raise; the web layer maps each kind to one HTTP status."""

from __future__ import annotations


class Refused(Exception):
    """A command that cannot be carried out; nothing was written."""

    def __init__(self, message: str, *, field: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class Invalid(Refused):
    """The input breaks a rule (422); `field` names the offending input."""


class NotFound(Refused):
    """The thing asked for does not exist, or is outside the caller's reach (404)."""


class Conflict(Refused):
    """The command clashes with the current state (409)."""


class NotAuthenticated(Refused):
    """No usable credentials: a wrong username or password, a refresh token that is unknown, used,
    expired or revoked (401). The message never says whether an account exists."""


class Forbidden(Refused):
    """The caller's role may not do this at all, wherever it is (403)."""


class TooManyAttempts(Refused):
    """Refused for a while after repeated failures (429); `retry_after` says how many seconds."""

    def __init__(self, message: str, *, retry_after: int, **details: object) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after
