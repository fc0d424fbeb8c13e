"""Device keys: how a key is made, presented, hashed, created, rotated and revoked.

A key is 256 random bits (``iothub_dk_`` and 43 URL-safe characters, a prefix secret scanners can match). The
database keeps HMAC-SHA256 of it keyed with ``DEVICE_KEY_SECRET``: a fast hash (microseconds, on every keyed
ingest request), which suffices because the key is random, not a password; a leaked table without the secret
reveals no key, nor lets anyone test guesses offline. The ingest statement compares hashes, never keys: the
caller cannot choose the bytes of a hash, so how long a comparison takes tells them nothing about the key.
"""

import hashlib
import hmac
import secrets
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from telemetry.models import Device, IngestKey

KEY_PREFIX = "iothub_dk_"
AUTHORIZATION_SCHEME = "Device"
# The WWW-Authenticate challenge of a refused ingest request (RFC 9110 section 11.6.1).
CHALLENGE = f'{AUTHORIZATION_SCHEME} realm="telemetry ingest"'


@cache
def _hmac_key(secret):
    return hashlib.sha256(b"iothub device key\x00" + secret.encode()).digest()


def ingest_key_hash(key):
    """The stored form of ``key``: 32 bytes of HMAC-SHA256 keyed with ``DEVICE_KEY_SECRET``."""
    return hmac.new(_hmac_key(settings.DEVICE_KEY_SECRET), key.encode(), hashlib.sha256).digest()


def presented_key(request):
    """The key an ingest request carries (``Authorization: Device <key>``), or None. Other schemes (a JWT
    ``Bearer``) carry no device key. Keys are never read from the URL, which reaches access logs."""
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != AUTHORIZATION_SCHEME.lower():
        return None
    return key.strip() or None


def ingest_key_generate():
    """A new key: 256 random bits, URL-safe, with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@transaction.atomic
def ingest_key_create(*, name, devices=()):
    """Creates a key for ``devices`` (each moves from its previous key, if any) and returns ``(ingest_key, key)``:
    the only time the key itself exists outside its holder."""
    key = ingest_key_generate()
    ingest_key = IngestKey.objects.create(name=name, key_hash=ingest_key_hash(key))
    ingest_key_assign(ingest_key=ingest_key, devices=devices)
    return ingest_key, key


@transaction.atomic
def ingest_key_assign(*, ingest_key, devices):
    """Makes ``devices`` exactly the devices of ``ingest_key``: the others it had return to open ingest."""
    ids = [device.pk for device in devices]
    Device.objects.filter(ingest_key=ingest_key).exclude(pk__in=ids).update(ingest_key=None)
    Device.objects.filter(pk__in=ids).update(ingest_key=ingest_key)


def ingest_key_rotate(*, ingest_key):
    """Gives ``ingest_key`` a new key, returned once; the old one stops working at once, for all its devices."""
    key = ingest_key_generate()
    ingest_key.key_hash = ingest_key_hash(key)
    ingest_key.rotated_at = timezone.now()
    ingest_key.save(update_fields=["key_hash", "rotated_at"])
    return key


def ingest_key_revoke(*, ingest_key):
    """Deletes ``ingest_key``: its devices return to open ingest."""
    ingest_key.delete()
