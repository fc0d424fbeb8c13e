from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """Apache edition: telemetry_rollup.refresh() recomputes each late span in statements of its own, which read the
    stores by index; joined to all spans at once they scanned the whole store for any late reading."""

    dependencies = [
        ("telemetry", "0014_invalidations_of_snapshot_writers"),
    ]

    operations = [
        RunLiveSQL(
            "functions/telemetry_rollup.refresh.apache.sql",
            "89f274ae6517481f6c9658960a06e5b3ef03ff0121422332b4f63c96f226d54c",
        ),
    ]
