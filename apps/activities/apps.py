from django.apps import AppConfig


class ActivitiesConfig(AppConfig):
    name = "apps.activities"
    label = "activities"
    verbose_name = "Activities"

    def ready(self) -> None:
        from apps.activities import registry

        registry.load_all()
