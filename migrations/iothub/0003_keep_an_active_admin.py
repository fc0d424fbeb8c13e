from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """The users table keeps at least one active admin, whoever writes (trigger users_keep_an_active_admin)."""

    dependencies = [
        ("iothub", "0002_login_counters"),
    ]

    operations = [
        RunLiveSQL("triggers/users_keep_an_active_admin.sql", "b6988b1d3a303be1139044739c6e41005bd2bb0779d244d64a68d9f17bf23121"),
    ]
