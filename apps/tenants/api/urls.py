from django.urls import path

from apps.tenants.api import views

users = views.UserViewSet
tenants = views.OperatorTenantViewSet

urlpatterns = [
    path("auth/token", views.TokenView.as_view(), name="auth-token"),
    path("me", views.MeView.as_view(), name="me"),
    path("tenant", views.CurrentTenantView.as_view(), name="tenant-current"),
    path("users/", users.as_view({"get": "list", "post": "create"}), name="user-list"),
    path("users/<int:pk>/", users.as_view({"get": "retrieve", "patch": "partial_update"}), name="user-detail"),
    path("users/<int:pk>/deactivate", users.as_view({"post": "deactivate"}), name="user-deactivate"),
    path("users/<int:pk>/activate", users.as_view({"post": "activate"}), name="user-activate"),
    path("operator/tenants/", tenants.as_view({"get": "list", "post": "create"}), name="operator-tenant-list"),
    path("operator/tenants/<int:pk>/", tenants.as_view({"get": "retrieve", "patch": "partial_update"}),
         name="operator-tenant-detail"),
]
