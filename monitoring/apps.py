from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        # Registers the OpenAPI extension of the API key authentication.
        from . import schema  # noqa: F401
