# A rule for a device or a device type names a metric its type declares, checked by the database too (trigger
# rules_metric_declared, SQLSTATE IO004), not only by the API and Admin: a DBA's INSERT meets the same rule.

from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):

    dependencies = [
        ('rules', '0014_notification_payload'),
        ('telemetry', '0022_device_type_strict_metrics'),  # metrics_declared()
    ]

    operations = [
        RunLiveSQL(
            "triggers/rules_metric_declared.sql",
            "e6eec854571d79191c7219d0d9e6960a1f1968fc2f7f8e01306c78b47a44e6d4",
        ),
    ]
