"""Portal URLs of tasks, mounted at /tasks/ (before the portal's own routes, replacing its
placeholder page)."""

from django.urls import path

from apps.approvals import views

app_name = "approvals-portal"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("link/<str:token>/", views.task_link, name="link"),
    path("<int:task_id>/", views.task_detail, name="task"),
    path("<int:task_id>/<slug:action>/", views.task_action, name="task-action"),
]
