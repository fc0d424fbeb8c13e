from django.db import migrations

from iothub.migration_operations import RunSQLFileForEdition


class Migration(migrations.Migration):
    # Continuous aggregates can't be created with data or refreshed inside a transaction.
    atomic = False

    dependencies = [
        ("telemetry", "0001_initial"),
    ]

    operations = [
        # telemetry_1m, telemetry_1h, telemetry_1d: continuous aggregates with TSL, plain views without.
        RunSQLFileForEdition(
            timescale="telemetry/0002_aggregates.timescale.sql",
            apache="telemetry/0002_aggregates.apache.sql",
            reverse_timescale="telemetry/0002_aggregates.reverse.timescale.sql",
            reverse_apache="telemetry/0002_aggregates.reverse.apache.sql",
        ),
    ]
