from django.urls import path

from apps.portal import views

app_name = "portal"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password-change"),
    path("account/password/done/", views.PasswordChangeDoneView.as_view(), name="password-change-done"),
    path("switch-tenant/", views.switch_tenant, name="switch-tenant"),
    path("", views.dashboard, name="dashboard"),
    path("campaigns/", views.campaigns, name="campaigns"),
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
