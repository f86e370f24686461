from django.urls import path

from apps.channels.api import views

urlpatterns = [
    path("channels/settings", views.ChannelSettingsView.as_view(), name="channel-settings"),
    path("channels/settings/test-email", views.TestEmailView.as_view(), name="channel-test-email"),
    path("channels/settings/test-sms", views.TestSmsView.as_view(), name="channel-test-sms"),
    path("channels/settings/test-push", views.TestPushView.as_view(), name="channel-test-push"),
    path("channels/content/validate", views.ContentValidateView.as_view(), name="channel-content-validate"),
    path("channels/content/preview", views.ContentPreviewView.as_view(), name="channel-content-preview"),
    path("channels/content/proof", views.ProofView.as_view(), name="channel-content-proof"),
]
