"""``manage.py prepare_database``: what a web process does to the database before it serves, one process at a time."""

import contextlib

import psycopg2
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# The steps, in order: the schema, then what depends on it. Each is safe to run at every start.
STEPS = ("migrate", "readonly_role", "apply_timescale_policies")
# A session-level advisory lock, keyed like the project's others (sql/README.md).
LOCK_SQL = "SELECT pg_advisory_lock(hashtext('iothub'), hashtext('prepare_database'))"


class Command(BaseCommand):
    help = (
        f"Runs {', '.join(STEPS)} holding a PostgreSQL advisory lock: web containers starting at once "
        "(docker compose up --scale web=N) take turns, so two migrations never race and the later ones find "
        "nothing left to do. ensure_superuser, run after it, takes a lock of its own."
    )

    def handle(self, *args, **options):
        # On a connection of its own, held until every step has ended (migrate opens and closes Django's): the lock
        # is released when this connection closes, so also when the process dies.
        with contextlib.closing(psycopg2.connect(**connection.get_connection_params())) as holder:
            holder.autocommit = True
            with holder.cursor() as cursor:
                self.stdout.write("Taking the database preparation lock (web processes prepare one at a time).")
                cursor.execute(LOCK_SQL)
            for step in STEPS:
                options = {"interactive": False} if step == "migrate" else {}
                call_command(step, stdout=self.stdout, stderr=self.stderr, **options)
