from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("", include("apps.tenants.api.urls")),
    path("", include("apps.schemas.api.urls")),
    path("", include("apps.profiles.api.urls")),
    path("", include("apps.audiences.api.urls")),
    path("", include("apps.campaigns.api.urls")),
    path("", include("apps.files.api.urls")),
    path("", include("apps.channels.api.urls")),
    path("", include("apps.approvals.api.urls")),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("apps.channels.urls")),
    path("tasks/", include("apps.approvals.urls")),  # before the portal: replaces its placeholder
    path("", include("apps.portal.urls")),
]
