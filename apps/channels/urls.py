"""Public routes of messages and providers (outside the API: no login, signed instead)."""

from django.urls import path

from apps.channels import views

app_name = "channels"

urlpatterns = [
    path("t/o/<str:token>.gif", views.open_pixel, name="open"),
    path("t/c/<str:token>", views.click, name="click"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("hooks/channels/<slug:tenant_slug>/<str:channel>/status", views.status_report, name="status-report"),
]
