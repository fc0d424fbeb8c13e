"""``manage.py refresh_aggregates``: bring telemetry_1m/1h/1d up to date now (see docs/operations.md)."""

from django.core.management.base import BaseCommand, CommandError

from telemetry import timescale


class Command(BaseCommand):
    help = (
        "Brings telemetry_1m/1h/1d up to date now. Apache build: telemetry_rollup.refresh(wait_for_writers => true) "
        "(waits for running inserts, holds new ones back while it runs). TSL: refreshes each continuous aggregate "
        "over what its source keeps. The worker does this on its own schedule; this is for DBAs and scripts."
    )

    def handle(self, *args, **options):
        try:
            refreshed = timescale.refresh_aggregates(**timescale.configured())
        except (timescale.PolicySettingsError, timescale.RollupsUnavailable) as error:
            raise CommandError(str(error)) from error
        for name, detail in refreshed.items():
            if isinstance(detail, timescale.RollupRefresh):
                self.stdout.write(f"{name}: {detail.describe()}")
            else:
                start, end = detail
                self.stdout.write(f"{name}: refreshed from {start.isoformat()} to {end.isoformat()}")
