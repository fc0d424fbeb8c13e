"""System checks that refuse to start a misconfigured process."""

from django.core import checks
from django.db import connections

from iothub import edition


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


@checks.register(checks.Tags.database)
def check_timescaledb_edition(app_configs, databases=None, **kwargs):
    """The library serves the edition the database was migrated under. Database checks run in ``migrate`` (before
    anything is migrated) and ``manage.py check --database default``."""
    errors = []
    for alias in databases or ():
        try:
            edition.check(connections[alias])
        except edition.EditionMismatch as mismatch:
            errors.append(checks.Error(str(mismatch), id="iothub.E002"))
    return errors
