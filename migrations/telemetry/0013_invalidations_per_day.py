from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """Apache edition: the invalidation trigger logs one row per device and UTC day, so one statement's late
    readings weeks apart make the refresh recompute their days, not every bucket between them."""

    dependencies = [
        ("telemetry", "0012_refresh_holds_devices"),
    ]

    operations = [
        RunLiveSQL(
            "triggers/telemetry_rollup_invalidate.apache.sql",
            "060309cdc60081803b91493e70a1978d6810c4a830bb2b5a3f0f51b07baee8fb",
        ),
    ]
