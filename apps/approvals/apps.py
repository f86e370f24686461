from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals and tasks"

    def ready(self) -> None:
        from apps.approvals import receivers  # noqa: F401
