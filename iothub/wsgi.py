import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iothub.settings")

application = get_wsgi_application()

# A worker refuses to boot on a database migrated under another TimescaleDB edition (the app server then stops).
from iothub import edition  # noqa: E402  (needs the apps loaded)

edition.check_at_start()
