"""``manage.py apply_timescale_policies``: run at every start, after ``migrate`` (see docs/operations.md)."""

from django.core.management.base import BaseCommand, CommandError

from telemetry import timescale


class Command(BaseCommand):
    help = (
        "Makes TimescaleDB's compression, retention and continuous aggregate refresh policies match the "
        "TELEMETRY_* settings, and prints what it changed. Idempotent. On the Apache build it says that policies "
        "are unavailable and exits successfully."
    )

    def handle(self, *args, **options):
        try:
            changes = timescale.apply_policies(**timescale.configured())
        except timescale.PoliciesUnavailable as unavailable:
            self.stdout.write(str(unavailable))
            return
        except (timescale.PolicySettingsError, timescale.AggregatesMissing) as error:
            raise CommandError(str(error)) from error
        if not changes:
            self.stdout.write("TimescaleDB policies already match the settings: nothing changed.")
        for change in changes:
            self.stdout.write(change)
