from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class IothubConfig(AppConfig):
    default = True  # this module has a second AppConfig
    name = "iothub"
    verbose_name = "IoT Hub"

    def ready(self):
        from iothub import checks  # noqa: F401  (registers the system checks)


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the project's site (its login is behind the brute-force protection)."""

    default = False
    default_site = "iothub.admin_site.AdminSite"
