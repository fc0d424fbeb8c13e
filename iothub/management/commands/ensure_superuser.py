import environ
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from iothub.models import User


class Command(BaseCommand):
    help = (
        "Creates an admin from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD (or _PASSWORD_FILE) / "
        "DJANGO_SUPERUSER_EMAIL when given and no user of that name exists. Safe to run at every start."
    )

    def handle(self, *args, **options):
        env = environ.Env()
        username = env.str("DJANGO_SUPERUSER_USERNAME", default="")
        if not username:
            self.stdout.write("DJANGO_SUPERUSER_USERNAME not set: no admin created.")
            return
        with transaction.atomic():
            # Web containers starting at once (docker compose up --scale web=N) check and create one at a time.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('iothub'), hashtext('ensure_superuser'))")
            self._ensure(username)

    def _ensure(self, username):
        env = environ.Env()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"User {username!r} exists: left unchanged.")
            return
        password = env.str("DJANGO_SUPERUSER_PASSWORD", default="")
        if not password and env.str("DJANGO_SUPERUSER_PASSWORD_FILE", default=""):
            with open(env.str("DJANGO_SUPERUSER_PASSWORD_FILE")) as secret:
                password = secret.read().strip()
        if not password:
            raise CommandError("DJANGO_SUPERUSER_USERNAME is set but DJANGO_SUPERUSER_PASSWORD is not.")
        User.objects.create_superuser(username, env.str("DJANGO_SUPERUSER_EMAIL", default=""), password)
        self.stdout.write(f"Admin {username!r} created.")
