from django.db import migrations

from iothub.migration_operations import RunSQLFileForEdition


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0004_telemetry_device_no_extra_index"),
    ]

    operations = [
        # Apache build: telemetry_1m/1h/1d become stored closed buckets plus the open ones computed at query time,
        # kept up to date by telemetry_rollup.refresh() (the worker, every minute). With TSL: nothing changes.
        RunSQLFileForEdition(
            timescale="telemetry/0005_apache_rollups.timescale.sql",
            apache="telemetry/0005_apache_rollups.apache.sql",
            reverse_timescale="telemetry/0005_apache_rollups.reverse.timescale.sql",
            reverse_apache="telemetry/0005_apache_rollups.reverse.apache.sql",
        ),
    ]
