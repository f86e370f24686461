from django.urls import path

from apps.portal import campaign_views, views

app_name = "portal"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password-change"),
    path("account/password/done/", views.PasswordChangeDoneView.as_view(), name="password-change-done"),
    path("switch-tenant/", views.switch_tenant, name="switch-tenant"),
    path("", views.dashboard, name="dashboard"),
    path("campaigns/", campaign_views.campaign_list, name="campaigns"),
    path("campaigns/new/", campaign_views.campaign_new, name="campaign-new"),
    path("campaigns/<int:campaign_id>/", campaign_views.campaign_detail, name="campaign-detail"),
    path("campaigns/<int:campaign_id>/graph/", campaign_views.campaign_graph, name="campaign-graph"),
    path("campaigns/<int:campaign_id>/draft/", campaign_views.campaign_draft_save, name="campaign-draft"),
    path("campaigns/<int:campaign_id>/actions/<slug:action>/", campaign_views.campaign_action,
         name="campaign-action"),
    path("campaigns/<int:campaign_id>/runs/<int:run_id>/transitions/<int:index>/",
         campaign_views.transition_preview, name="campaign-transition"),
    path("campaigns/<int:campaign_id>/runs/<int:run_id>/log/", campaign_views.run_log, name="campaign-run-log"),
    path("audiences/", views.audiences, name="audiences"),
    path("data/", views.data, name="data"),
    path("tasks/", views.tasks, name="tasks"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/users/", views.user_list, name="user-list"),
    path("settings/users/add/", views.user_add, name="user-add"),
    path("settings/users/<int:user_id>/role/", views.user_role, name="user-role"),
    path("settings/users/<int:user_id>/deactivate/", views.user_deactivate, name="user-deactivate"),
    path("settings/users/<int:user_id>/activate/", views.user_activate, name="user-activate"),
]
