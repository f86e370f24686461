from django.urls import path

from apps.approvals.api import views

t = views.TaskViewSet
g = views.ApproverGroupViewSet

urlpatterns = [
    path("tasks/", t.as_view({"get": "list"}), name="task-list"),
    path("tasks/<int:pk>/", t.as_view({"get": "retrieve"}), name="task-detail"),
    *[path(f"tasks/<int:pk>/{action}", t.as_view({"post": action}), name=f"task-{action}")
      for action in ("approve", "reject", "assign", "claim", "complete")],
    path("approver-groups/", g.as_view({"get": "list", "post": "create"}), name="approver-group-list"),
    path("approver-groups/<int:pk>/", g.as_view({"get": "retrieve"}), name="approver-group-detail"),
    path("approver-groups/<int:pk>/members", g.as_view({"put": "members"}), name="approver-group-members"),
    path("campaigns/<int:pk>/approvers", views.CampaignApproversViewSet.as_view({"get": "retrieve", "put": "update"}),
         name="campaign-approvers"),
]
