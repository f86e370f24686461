from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "apps.audiences"
    label = "audiences"
    verbose_name = "Audiences"

    def ready(self) -> None:
        from apps.audiences import references  # noqa: F401  (registers the reference finder)
