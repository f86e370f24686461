from django.urls import path

from apps.campaigns.api import views

c = views.CampaignViewSet
r = views.RunViewSet

_campaign_actions = ["publish", "start", "test", "pause", "resume", "stop", "trigger", "duplicate", "archive",
                     "validate"]

urlpatterns = [
    path("campaigns/", c.as_view({"get": "list", "post": "create"}), name="campaign-list"),
    path("campaigns/<int:pk>/", c.as_view({"get": "retrieve", "patch": "partial_update"}), name="campaign-detail"),
    path("campaigns/<int:pk>/draft", c.as_view({"get": "draft", "put": "save_draft"}), name="campaign-draft"),
    path("campaigns/<int:pk>/versions/", c.as_view({"get": "versions"}), name="campaign-versions"),
    path("campaigns/<int:pk>/runs/", c.as_view({"get": "runs"}), name="campaign-runs"),
    path("campaigns/<int:pk>/schedule", c.as_view({"get": "schedule"}), name="campaign-schedule"),
    path("campaigns/<int:pk>/run-now", c.as_view({"post": "run_now"}), name="campaign-run-now"),
    path("campaigns/<int:pk>/back-to-draft", c.as_view({"post": "back_to_draft"}), name="campaign-back-to-draft"),
    *[path(f"campaigns/<int:pk>/{action}", c.as_view({"post": action}), name=f"campaign-{action}")
      for action in _campaign_actions],
    path("runs/", r.as_view({"get": "list"}), name="run-list"),
    path("runs/<int:pk>/", r.as_view({"get": "retrieve"}), name="run-detail"),
    path("runs/<int:pk>/log", r.as_view({"get": "log"}), name="run-log"),
    path("runs/<int:pk>/transitions/", r.as_view({"get": "transitions"}), name="run-transitions"),
    path("runs/<int:pk>/transitions/<int:index>/sample", r.as_view({"get": "sample"}), name="run-transition-sample"),
    path("runs/<int:pk>/why", r.as_view({"get": "why"}), name="run-why"),
    path("runs/<int:pk>/stop", r.as_view({"post": "stop"}), name="run-stop"),
    path("runs/<int:pk>/retry", r.as_view({"post": "retry"}), name="run-retry"),
    path("activities/", views.ActivityTypesView.as_view(), name="activity-types"),
    path("schedules/preview", views.SchedulePreviewView.as_view(), name="schedule-preview"),
]
