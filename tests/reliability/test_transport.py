"""Transport security at the edge: the production nginx template, run for real on loopback in front of the app
server with the fixtures of tests/deploy/test_proxy_tls.py (imported by conftest.py; that module also covers the 308
redirect, the 413 and the ingest 429): old TLS versions refused, security headers on every HTTPS response, the
ingest limit counted per client."""

import http.client
import socket
import ssl
import threading
import warnings

import pytest

from tests.deploy.test_proxy_tls import INGEST, NGINX, Response, free_port

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    pytest.mark.django_db(transaction=True),
]

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _old_tls_client(version, cafile):
    """A client offering only ``version``. OpenSSL's default security level forbids TLS 1.0/1.1 on the client
    side: level 0 lets the client offer them, so a refusal can only come from the server."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl deprecates the very versions under test
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _handshake(port, context):
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as conn,
    ):
        return conn.version()


@pytest.fixture
def permissive_tls_server(certificate):
    """A TLS server that accepts any version with the same certificate: proof that the old-version client works."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(certificate / "tls.crt", certificate / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve():
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(10)
            with client, context.wrap_socket(client, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopping.set()
    thread.join(timeout=10)
    listener.close()


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_before_1_2_is_refused(start_proxy, certificate, permissive_tls_server, version):
    _, https_port = start_proxy()
    client = _old_tls_client(getattr(ssl.TLSVersion, version), str(certificate / "tls.crt"))
    assert _handshake(permissive_tls_server, client) == version.replace("_", ".")
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(https_port, client)
    # The server's alert, not a client-side refusal to offer the version.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def test_tls_1_3_is_served(start_proxy, tls):
    _, https_port = start_proxy()
    tls.minimum_version = ssl.TLSVersion.TLSv1_3
    assert _handshake(https_port, tls) == "TLSv1.3"


def _request(port, method, path, context, *, body=None, headers=None, source="127.0.0.1", declared_length=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context, source_address=(source, 0))
    try:
        if declared_length is None:
            conn.request(method, path, body=body, headers=headers or {})
        else:
            # Refused on the declared length, before any body is sent.
            conn.putrequest(method, path)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(declared_length))
            conn.endheaders()
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def _ingest(port, context, source="127.0.0.1"):
    return _request(
        port, "POST", INGEST, context, body=b"[]", headers={"Content-Type": "application/json"}, source=source
    )


def test_every_https_response_carries_the_security_headers_once(start_proxy, tls):
    _, https_port = start_proxy(NGINX_INGEST_RATE="1r/s", NGINX_INGEST_BURST="1")
    responses = {
        "health": _request(https_port, "GET", "/api/v1/health/", tls),
        "API problem from Django": _request(https_port, "GET", "/api/v1/users/", tls),
        "API 404 from Django": _request(https_port, "GET", "/api/v1/no-such-thing/", tls),
        "HTML 404 outside the API": _request(https_port, "GET", "/no-such-page/", tls),
        "413 from nginx": _request(https_port, "POST", INGEST, tls, declared_length=2 * 1024 * 1024),
        "429 from nginx": next(r for r in (_ingest(https_port, tls) for _ in range(10)) if r.status == 429),
    }
    _, unreachable = start_proxy(NGINX_UPSTREAM=f"127.0.0.1:{free_port()}")
    responses["502 from nginx"] = _request(unreachable, "GET", "/api/v1/users/", tls)

    assert [r.status for r in responses.values()] == [200, 401, 404, 404, 413, 429, 502]
    for name, response in responses.items():
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get_all(header) == [value], (name, header, response.headers.get_all(header))


def test_the_ingest_limit_counts_each_client_address_apart(start_proxy, tls):
    """One device over its allowance does not stop another: the limit is keyed on the client's address (loopback
    has the whole 127.0.0.0/8, so a second client connects from 127.0.0.2)."""
    _, https_port = start_proxy(NGINX_INGEST_RATE="1r/m", NGINX_INGEST_BURST="1")
    first = [_ingest(https_port, tls).status for _ in range(4)]
    assert 429 in first
    assert _ingest(https_port, tls, source="127.0.0.2").status != 429
    # A header cannot make one client look like another: nginx keys on the connection's address.
    spoofed = _request(
        https_port,
        "POST",
        INGEST,
        tls,
        body=b"[]",
        headers={"Content-Type": "application/json", "X-Forwarded-For": "127.0.0.3", "X-Real-IP": "127.0.0.3"},
    )
    assert spoofed.status == 429
