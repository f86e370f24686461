"""Public endpoints reached from messages and providers (no login: a signed token or a signed
request is the credential): the open pixel, click redirects, the unsubscribe page (RFC 8058
one-click POST too), and SMS/push delivery reports."""

from __future__ import annotations

import base64

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.channels import tracking
from apps.tenants.models import Tenant

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@require_GET
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    try:
        tracking.track_open(token)
    except tracking.BadToken:
        pass  # a pixel always answers the same: it reveals nothing
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store, max-age=0"
    return response


@require_GET
def click(request: HttpRequest, token: str) -> HttpResponse:
    try:
        return HttpResponseRedirect(tracking.track_click(token))
    except tracking.BadToken:
        raise Http404("Unknown link.") from None


@csrf_exempt  # the signed token is the credential; mail clients POST one-click without a CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        tenant, _ = tracking.unsubscribe_target(token)
    except tracking.BadToken:
        raise Http404("Unknown link.") from None
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        tracking.unsubscribe(token, source="one-click unsubscribe" if one_click else "unsubscribe link")
        if one_click:
            return HttpResponse(status=200)
        return render(request, "channels/unsubscribe.html", {"tenant": tenant, "done": True})
    return render(request, "channels/unsubscribe.html", {"tenant": tenant, "done": False})


@csrf_exempt  # authenticated by the HMAC signature of the channel's webhook secret
@require_POST
def status_report(request: HttpRequest, tenant_slug: str, channel: str) -> HttpResponse:
    tenant = Tenant.objects.filter(slug=tenant_slug, is_active=True).first()
    if tenant is None or channel not in ("sms", "push"):
        raise Http404("Unknown endpoint.")
    try:
        known = tracking.status_callback(
            tenant=tenant, channel=channel, body=request.body,
            timestamp=request.headers.get("X-Campaigns-Timestamp", ""),
            signature=request.headers.get("X-Campaigns-Signature", ""))
    except tracking.BadToken as exc:
        return HttpResponse(str(exc), status=403 if "signature" in str(exc) else 400, content_type="text/plain")
    return HttpResponse(status=204 if known else 404)
