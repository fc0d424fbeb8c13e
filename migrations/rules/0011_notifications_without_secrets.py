import re
from urllib.parse import urlsplit

from django.db import migrations
from django.db.models import Q

# A frozen copy of rules.notifications.redact_url (migrations are history: a later change must not alter this one).
URL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url):
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "…"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    rest = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password
    return f"{origin}/…" if rest else origin


def redact_urls(text):
    def redact_match(match):
        url = match.group(0)
        trailing = url[len(url.rstrip(".,:;")) :]
        return redact_url(url.rstrip(".,:;")) + trailing

    return URL_PATTERN.sub(redact_match, text)


def forwards(apps, schema_editor):
    Notification = apps.get_model("rules", "Notification")
    stored = Notification.objects.filter(Q(request__has_key="url") | Q(last_error__contains="://"))
    for notification in stored.iterator():
        if notification.request and "url" in notification.request:
            notification.request["url"] = redact_url(notification.request["url"])
        notification.last_error = redact_urls(notification.last_error)
        notification.save(update_fields=["request", "last_error"])


class Migration(migrations.Migration):
    """Notifications recorded before webhook URLs were redacted lose the URLs' secret parts: the request's URL and
    any URL in last_error keep only their scheme, host and port (docs/rules.md, "Who sees a channel's target")."""

    dependencies = [
        ("rules", "0010_message_in_one_pass"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True),
    ]
