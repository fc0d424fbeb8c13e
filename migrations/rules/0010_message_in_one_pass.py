from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """rule_render_message() substitutes the placeholders in one pass: text a placeholder rendered (a device name,
    a string value) is never substituted again."""

    dependencies = [
        ("rules", "0009_live_sql"),
    ]

    operations = [
        RunLiveSQL("functions/rule_render_message.sql", "de68d886de3248c52a5a0c7e4ad22c7581bdfb260c38884c9959cf32c91982b4"),
    ]
