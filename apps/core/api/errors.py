"""Every API error has one shape: `{"error": {"code", "message", "fields"}}`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from apps.core.errors import ApplicationError
from apps.tenants.scoping import TenantScopeError


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [str(item) for item in detail]
        return [_flatten(item) for item in detail]
    return [str(detail)]


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status, headers=exc.headers)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, TenantScopeError):
        exc = exceptions.PermissionDenied("No tenant is selected.")

    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: let Django log it and answer 500

    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.pop("non_field_errors", None)
            message = non_field[0] if non_field else "Invalid input."
            if non_field:
                fields["non_field_errors"] = non_field
        else:
            items = _flatten(detail)
            fields = {}
            message = items[0] if items and isinstance(items[0], str) else "Invalid input."
        return Response(error_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST,
                        headers=headers)

    detail = exc.detail
    code = exc.default_code
    if isinstance(detail, dict):
        message = str(next(iter(detail.values()), exc.default_detail))
    elif isinstance(detail, list):
        message = str(detail[0]) if detail else str(exc.default_detail)
    else:
        message = str(detail)
        code = getattr(detail, "code", code) or code
    return Response(error_body(code, message), status=exc.status_code, headers=headers)
