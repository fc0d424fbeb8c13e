from django.apps import AppConfig


class IothubConfig(AppConfig):
    name = "iothub"
    verbose_name = "IoT Hub"

    def ready(self):
        from iothub import checks  # noqa: F401  (registers the system checks)
