"""System checks that refuse to start a misconfigured process."""

from django.core import checks
from django.db import connections


@checks.register(checks.Tags.compatibility)
def check_database_driver(app_configs, **kwargs):
    """Persistent psycopg2 connections are our pool; with psycopg 3 installed Django silently switches driver."""
    errors = []
    for alias in connections:
        connection = connections[alias]
        driver = getattr(connection.Database, "__name__", "")
        if connection.vendor == "postgresql" and driver != "psycopg2":
            errors.append(
                checks.Error(
                    f"Database '{alias}' uses the driver '{driver}', not psycopg2.",
                    hint="Uninstall psycopg (3): IoT Hub is built and tested on psycopg2-binary only.",
                    id="iothub.E001",
                )
            )
    return errors
