"""What a locked-out client sees (django-axes): the API's JSON error body on /api/, the portal's
lockout page elsewhere."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

MESSAGE = "Too many failed logins: this account is locked for a while."


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    retry_after = str(int(float(settings.AXES_COOLOFF_TIME) * 3600))
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": {"code": "locked_out", "message": MESSAGE, "fields": {}}}, status=429)
    else:
        response = render(request, settings.AXES_LOCKOUT_TEMPLATE,
                          {"cooloff_hours": settings.AXES_COOLOFF_TIME}, status=429)
    response["Retry-After"] = retry_after
    return response
