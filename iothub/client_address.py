"""The address of the client behind a request, for limits keyed on it (iothub/login_protection.py).

The TCP peer (``REMOTE_ADDR``) is the client, unless it is one of ``TRUSTED_PROXIES``: then the proxy's
``X-Forwarded-For`` names the client. The header is read from the right, where the nearest proxy wrote it, and the
first address that is not a trusted proxy is the client; what a client wrote further left is never believed. The
project's nginx replaces the header with the connection's address (docker/nginx/templates), so behind it the
header holds exactly one address. Anyone else's header is ignored: a client that reaches the app server directly (as in
`make run`, which trusts no proxy) cannot choose its address.
"""

import ipaddress

from django.conf import settings

# What REMOTE_ADDR holds when the app server listens on a Unix socket: no address to key on.
UNKNOWN_ADDRESS = "0.0.0.0"


def _address(text):
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d: one client, one key.
    return getattr(address, "ipv4_mapped", None) or address


def _trusted(address):
    return any(address in network for network in settings.TRUSTED_PROXIES)


def client_address(request):
    """The client's IP address as text (IPv4-mapped IPv6 addresses as IPv4)."""
    client = _address(request.META.get("REMOTE_ADDR", ""))
    if client is None:
        return UNKNOWN_ADDRESS
    if _trusted(client):
        hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        for hop in reversed(hops):
            forwarded = _address(hop)
            if forwarded is None:
                break  # garbage from further left than any proxy we trust: the last good address stands
            client = forwarded
            if not _trusted(forwarded):
                break
    return str(client)
