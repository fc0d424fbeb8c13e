"""``manage.py enforce_retention``: the worker runs it daily (telemetry/tasks.py)."""

from django.core.management.base import BaseCommand, CommandError

from telemetry import timescale


class Command(BaseCommand):
    help = (
        "Drops the telemetry chunks entirely older than TELEMETRY_RETENTION_DAYS now, and with TSL the continuous "
        "aggregates' chunks older than their retention; prints the chunks dropped. Works on both editions."
    )

    def handle(self, *args, **options):
        settings = timescale.configured()
        try:
            dropped = timescale.enforce_retention(**settings)
        except timescale.PolicySettingsError as error:
            raise CommandError(str(error)) from error
        periods = timescale.retention_periods(
            retention_days=settings["retention_days"], aggregate_retention_days=settings["aggregate_retention_days"]
        )
        for relation, chunks in dropped.items():
            older_than = timescale.human_duration(periods[relation])
            self.stdout.write(f"{relation}: {len(chunks)} chunk(s) older than {older_than} dropped")
            for chunk in chunks:
                self.stdout.write(f"  {chunk}")
