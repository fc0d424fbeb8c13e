# One definition of a notification's payload, notification_payload(), for the rule trigger (re-created by
# telemetry 0023) and rules_evaluate_no_data(), which each built it themselves before.

from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):

    dependencies = [
        ('rules', '0013_no_data_rules'),
    ]

    operations = [
        RunLiveSQL(
            "functions/notification_payload.sql",
            "8c314ae5131c548c66f533eaa8345c3577a60f8bc28935ddb3119e99c5bce44e",
        ),
        RunLiveSQL(
            "functions/rules_evaluate_no_data.sql",
            "3a237baaa2c2a7c89d8dc70c2cdde74d9e4166ccf3864641b4f6e94babde5305",
        ),
    ]
