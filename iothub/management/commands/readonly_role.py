import environ
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from iothub import readonly_role


class Command(BaseCommand):
    help = (
        f"Creates or updates the read-only database role {readonly_role.ROLE}: SELECT on "
        f"{', '.join(readonly_role.READABLE)} and nothing else; the password from IOTHUB_READONLY_PASSWORD (or "
        "_FILE), NOLOGIN without one. Needs CREATEROLE. Safe to run at every start."
    )

    def add_arguments(self, parser):
        parser.add_argument("--role", default=readonly_role.ROLE, help="the role's name (default: %(default)s)")

    def handle(self, *args, role, **options):
        env = environ.Env()
        password = env.str("IOTHUB_READONLY_PASSWORD", default="")
        if not password and env.str("IOTHUB_READONLY_PASSWORD_FILE", default=""):
            with open(env.str("IOTHUB_READONLY_PASSWORD_FILE")) as secret:
                password = secret.read().strip()
        try:
            self.stdout.write(readonly_role.ensure(password or None, role=role))
        except DatabaseError as error:
            raise CommandError(
                f"Could not create or update {role}: {error}".strip()
                + " (the database role running this command needs CREATEROLE)"
            ) from error
