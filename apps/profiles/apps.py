from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "apps.profiles"
    label = "profiles"
    verbose_name = "Profiles and consent"

    def ready(self) -> None:
        from apps.profiles import receivers  # noqa: F401
