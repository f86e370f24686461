"""The one error type services raise for a business rule; the API turns it into its error body."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A business rule said no. `status` is the HTTP status the API answers with (409 for an
    illegal state transition, 400 for invalid input, 404 for something not found)."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400,
                 fields: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.fields = fields or {}
        self.headers = headers or {}


class NotFound(ApplicationError):
    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message, code="not_found", status=404)


class Conflict(ApplicationError):
    def __init__(self, message: str, *, code: str = "conflict", fields: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, status=409, fields=fields)


class PermissionDenied(ApplicationError):
    def __init__(self, message: str = "You do not have permission to perform this action.") -> None:
        super().__init__(message, code="permission_denied", status=403)
