from django.apps import AppConfig


class SchemasConfig(AppConfig):
    name = "apps.schemas"
    label = "schemas"
    verbose_name = "Data schemas and records"

    def ready(self) -> None:
        from apps.schemas import receivers  # noqa: F401
