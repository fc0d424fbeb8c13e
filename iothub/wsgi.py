import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.db.backends.signals import connection_created

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iothub.settings")

application = get_wsgi_application()


def bound_request_statements(sender, connection, **kwargs):
    """Every statement of a web request ends within DB_STATEMENT_TIMEOUT: one stuck on a lock or a slow plan is
    cancelled (a 503 for the client) instead of holding a thread and a database backend after the proxy gave up.
    Set here, on the web server's connections only: commands and the worker run long statements by design. A
    request that must run longer lifts it for its transaction (``SET LOCAL statement_timeout = 0``)."""
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = %s", [f"{settings.DB_STATEMENT_TIMEOUT}s"])


connection_created.connect(bound_request_statements, dispatch_uid="iothub.wsgi.bound_request_statements")

# A worker refuses to boot on a database migrated under another TimescaleDB edition (the app server then stops).
from iothub import edition  # noqa: E402  (needs the apps loaded)

edition.check_at_start()
