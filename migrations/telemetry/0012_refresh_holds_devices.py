from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """Apache edition: telemetry_rollup.refresh() locks the devices FOR KEY SHARE before it reads, so a device
    deleted while a lock-free refresh runs leaves none of its rows in the rollup stores."""

    dependencies = [
        ("telemetry", "0011_aggregates_skip_huge_numbers"),
    ]

    operations = [
        RunLiveSQL(
            "functions/telemetry_rollup.refresh.apache.sql",
            "51872b3f6c27cbec5391275f305044384d80487751ab62fd299654c30186bfe3",
        ),
    ]
