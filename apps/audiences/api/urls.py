from django.urls import path

from apps.audiences.api import views

audiences = views.AudienceViewSet

urlpatterns = [
    path("audiences/", audiences.as_view({"get": "list", "post": "create"}), name="audience-list"),
    path("audiences/<int:pk>/", audiences.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
         name="audience-detail"),
    path("audiences/<int:pk>/refresh", audiences.as_view({"post": "refresh"}), name="audience-refresh"),
    path("audiences/<int:pk>/preview", audiences.as_view({"get": "preview"}), name="audience-preview"),
    path("audiences/<int:pk>/export", audiences.as_view({"get": "export"}), name="audience-export"),
]
