"""``manage.py apply_timescale_policies``: run at every start, after ``migrate`` (see docs/operations.md)."""

from django.core.management.base import BaseCommand, CommandError

from telemetry import timescale


class Command(BaseCommand):
    help = (
        "Makes TimescaleDB's compression, retention and continuous aggregate refresh policies match the "
        "TELEMETRY_* settings, and prints what it changed. Idempotent. On the Apache build it says that policies "
        "are unavailable, brings the rollups behind telemetry_1m/1h/1d up to date, and exits successfully."
    )

    def handle(self, *args, **options):
        try:
            changes = timescale.apply_policies(**timescale.configured())
        except timescale.PoliciesUnavailable as unavailable:
            self.stdout.write(str(unavailable))
            self._refresh_rollups()
            return
        except (timescale.PolicySettingsError, timescale.AggregatesMissing) as error:
            raise CommandError(str(error)) from error
        if not changes:
            self.stdout.write("TimescaleDB policies already match the settings: nothing changed.")
        for change in changes:
            self.stdout.write(change)

    def _refresh_rollups(self):
        # At start, before the web server takes readings: what accumulated while stopped is materialized now
        # rather than by the worker's first runs.
        try:
            result = timescale.refresh_aggregates(**timescale.configured())["rollups"]
        except timescale.RollupsUnavailable as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Rollups refreshed: {result.describe()}.")
