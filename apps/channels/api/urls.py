from django.urls import path

from apps.channels.api import confirmations, reports, views

d = views.DeliveryViewSet

urlpatterns = [
    path("channels/settings", views.ChannelSettingsView.as_view(), name="channel-settings"),
    path("channels/settings/test-email", views.TestEmailView.as_view(), name="channel-test-email"),
    path("channels/settings/test-sms", views.TestSmsView.as_view(), name="channel-test-sms"),
    path("channels/settings/test-push", views.TestPushView.as_view(), name="channel-test-push"),
    path("channels/content/validate", views.ContentValidateView.as_view(), name="channel-content-validate"),
    path("channels/content/preview", views.ContentPreviewView.as_view(), name="channel-content-preview"),
    path("channels/content/proof", views.ProofView.as_view(), name="channel-content-proof"),
    path("channels/bounces", views.BounceView.as_view(), name="channel-bounces"),
    path("channels/report", views.ReportView.as_view(), name="channel-report"),
    path("channels/report.csv", reports.ReportCsvView.as_view(), name="channel-report-csv"),
    path("channels/deliveries/", d.as_view({"get": "list"}), name="delivery-list"),
    path("channels/deliveries/<int:pk>/", d.as_view({"get": "retrieve"}), name="delivery-detail"),
    path("channels/deliveries/<int:pk>/messages/", d.as_view({"get": "messages"}), name="delivery-messages"),
    path("channels/deliveries/<int:pk>/file", d.as_view({"get": "file"}), name="delivery-file"),
    path("channels/deliveries/<int:pk>/confirm", confirmations.DeliveryConfirmView.as_view(), name="delivery-confirm"),
    path("channels/deliveries/<int:pk>/cancel", confirmations.DeliveryCancelView.as_view(), name="delivery-cancel"),
]
