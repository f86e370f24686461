from django.urls import path

from apps.profiles.api import views

profiles = views.ProfileViewSet
consents = views.ProfileConsentViewSet

urlpatterns = [
    path("profiles/", profiles.as_view({"get": "list", "post": "create"}), name="profile-list"),
    path("profiles/<str:key>/", profiles.as_view(
        {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}), name="profile-detail"),
    path("profiles/<str:key>/consents", consents.as_view({"get": "list", "post": "create"}),
         name="profile-consents"),
]
