from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """The Apache edition's rollup functions, triggers and views as live files: the same definitions as
    sql/history/telemetry/0005_apache_rollups.apache.sql, from now on changed in one file per object. (The community
    edition's continuous aggregates can't be replaced; their live files document what 0002 created.)"""

    dependencies = [
        ("telemetry", "0008_recorded_edition"),
    ]

    operations = [
        RunLiveSQL("functions/telemetry_rollup.watermark.apache.sql", "162a2f898a688e9f11d888cc8a7b1b0a18169210dc40ce73139e63589e7e7292"),
        RunLiveSQL("functions/telemetry_rollup.bucket_spans.apache.sql", "703621e7a5ed17cc228f141a82c227c513dd5bc8c652d52e97b8465241e101db"),
        RunLiveSQL("functions/telemetry_rollup.refresh.apache.sql", "d7ee0e8a6aa2e605f5d6f614ce942098b683384823320159133d7d4461f926c3"),
        RunLiveSQL("triggers/telemetry_rollup_invalidate.apache.sql", "4c3b6f8b73dd1e5d86921a3d225f7b3bd43f5b9a5e8eddfb99a8ef80e50696df"),
        RunLiveSQL("triggers/devices_forget_rollups.apache.sql", "3acd8bc59034b02390796103ecf887c364149209a4b951e6e6991dd827f14122"),
        RunLiveSQL("views/telemetry_1m.apache.sql", "eac8121cac83224cc904d1ae0f1a60bffdef3cf959a74bae0c669003e8ffdb73"),
        RunLiveSQL("views/telemetry_1h.apache.sql", "b4043ff103809fb87942e06e01350f255d02442d42b1b2dcfbccea7ec4d5b5a0"),
        RunLiveSQL("views/telemetry_1d.apache.sql", "1743e4aa3233e4dfa134a5d399e2ce9cd6cfcb820dce15741f8608aa128e6c57"),
    ]
