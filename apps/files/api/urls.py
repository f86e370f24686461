from django.urls import path

from apps.files.api import views

f = views.CampaignFileViewSet

urlpatterns = [
    path("campaigns/<int:pk>/files/", f.as_view({"get": "list", "post": "create"}), name="campaign-file-list"),
    path("campaigns/<int:pk>/files/<int:file_id>/", f.as_view({"get": "retrieve", "delete": "destroy"}),
         name="campaign-file-detail"),
    path("campaigns/<int:pk>/files/<int:file_id>/columns", f.as_view({"get": "columns"}),
         name="campaign-file-columns"),
    path("runs/<int:pk>/rejects", views.RunRejectsViewSet.as_view({"get": "rejects"}), name="run-rejects"),
]
