"""End to end through the proxy: the project's nginx template, rendered the way the nginx image renders it, in
front of the app server (granian, iothub/serve.py) serving the app on the test database, spoken to over real TLS.
Loopback only."""

import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from django.db import connection

from bench.nginx import NGINX, ROOT, write_config
from bench.stack import free_port, port_open
from telemetry.ingest.keys import ingest_key_create
from tests.factories import DeviceFactory

INGEST = "/api/v1/telemetry/ingest/"
# The ingest ceiling per client address that docker-compose.yml gives nginx when nothing is set.
COMPOSE_INGEST_CEILING = dict(
    re.findall(r"(NGINX_INGEST_(?:RATE|BURST)): \$\{\w+:-([^}]+)\}", (ROOT / "docker-compose.yml").read_text())
)
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code", "errors"}

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    # The app server is another process: it sees only what is committed.
    pytest.mark.django_db(transaction=True),
]


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def wait_until(ready, process, log, timeout=30):
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"{process.args[0]} did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(port, method, path, *, tls=None, body=None, headers=None):
    connection_class = http.client.HTTPSConnection if tls else http.client.HTTPConnection
    extra = {"context": tls} if tls else {}
    conn = connection_class("127.0.0.1", port, timeout=10, **extra)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def assert_problem(response, status):
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body.keys() >= PROBLEM_MEMBERS
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["errors"] == []
    return body


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """The certificate the `init` service generates: the one a fresh `docker compose up` serves."""
    directory = tmp_path_factory.mktemp("init")
    result = subprocess.run(
        [str(ROOT / "docker" / "entrypoint.sh"), "init"],
        env={
            "PATH": os.environ["PATH"],
            "IOTHUB_SECRETS_DIR": str(directory / "secrets"),
            "IOTHUB_CERTS_DIR": str(directory / "certs"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return directory / "certs"


@pytest.fixture(scope="module")
def tls(certificate):
    """A client that trusts only the generated certificate and checks the host name against it."""
    return ssl.create_default_context(cafile=str(certificate / "tls.crt"))


@pytest.fixture(scope="module")
def app_server(django_db_setup, tmp_path_factory):
    """The app server as the container runs it (``python -m iothub.serve``) on the test database (django_db_setup
    creates it for the marked tests), one worker. Several servers behind the proxy:
    tests/deploy/test_login_protection_stack.py."""
    database = connection.settings_dict
    database_url = "postgres://{}:{}@{}:{}/{}".format(
        *(quote(str(database[key]), safe="") for key in ("USER", "PASSWORD", "HOST", "PORT", "NAME"))
    )
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    environment = {
        **os.environ,
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": database_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DEBUG": "0",
        "AUTH_THROTTLE_RATE": "3/min",
        "INGEST_DEVICE_RATE": "3/min",  # only test_a_device_over_its_rate_* sends readings that count
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "iothub.serve"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port), process, log)
        yield port
    finally:
        stop(process)


@pytest.fixture
def start_proxy(app_server, certificate, tmp_path):
    """start_proxy(**NGINX_variables) -> (http_port, https_port): nginx on the rendered template."""
    processes = []

    def start(**overrides):
        http_port, https_port = free_port(), free_port()
        variables = {
            "NGINX_HTTP_PORT": f"127.0.0.1:{http_port}",
            "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
            "NGINX_HTTPS_PORT_SUFFIX": f":{https_port}",
            "NGINX_UPSTREAM": f"127.0.0.1:{app_server}",
            **COMPOSE_INGEST_CEILING,
            "NGINX_INGEST_RATE_LIMIT": "on",
            "NGINX_CERT_DIR": str(certificate),
            **overrides,
        }
        directory = tmp_path / f"nginx-{len(processes)}"
        directory.mkdir()
        command = write_config(directory, variables)
        log = directory / "error.log"
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        wait_until(lambda: port_open(http_port) and port_open(https_port), process, log)
        return http_port, https_port

    yield start
    for process in processes:
        stop(process)


def test_health_over_https_with_hsts(start_proxy, tls):
    _, https_port = start_proxy()
    response = request(https_port, "GET", "/api/v1/health/", tls=tls)
    assert response.status == 200, response.body
    assert response.json()["database"] == "ok"
    # Exactly one: nginx hides Django's own.
    assert response.headers.get_all("Strict-Transport-Security") == ["max-age=31536000"]


def test_tls_1_2_clients_are_served(start_proxy, tls, certificate):
    _, https_port = start_proxy()
    tls_1_2 = ssl.create_default_context(cafile=str(certificate / "tls.crt"))
    tls_1_2.maximum_version = ssl.TLSVersion.TLSv1_2
    assert request(https_port, "GET", "/api/v1/health/", tls=tls_1_2).status == 200


def test_forwarded_proto_reaches_django(start_proxy, tls):
    """Without X-Forwarded-Proto Django would redirect this request to HTTPS instead of refusing it."""
    _, https_port = start_proxy()
    response = request(https_port, "GET", "/api/v1/users/", tls=tls)
    assert_problem(response, 401)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_plain_http_is_redirected_with_308(start_proxy, method):
    http_port, https_port = start_proxy()
    response = request(http_port, method, "/api/v1/users/?page=2", body=b"{}" if method == "POST" else None)
    assert response.status == 308
    assert response.headers["Location"] == f"https://127.0.0.1:{https_port}/api/v1/users/?page=2"


def test_plain_http_answers_nothing_but_redirects_health_included(start_proxy):
    # Container healthchecks call the app inside the network; from outside, all access is over TLS.
    http_port, https_port = start_proxy()
    response = request(http_port, "GET", "/api/v1/health/")
    assert response.status == 308, response.body
    assert response.headers["Location"] == f"https://127.0.0.1:{https_port}/api/v1/health/"


def test_body_over_the_proxy_limit_is_a_413_problem_from_nginx(start_proxy, tls):
    _, https_port = start_proxy()
    conn = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=tls)
    try:
        # Refused on the declared length, before any of the body is read.
        conn.putrequest("POST", INGEST)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        response = Response(response.status, response.headers, response.read())
    finally:
        conn.close()
    body = assert_problem(response, 413)
    assert body["code"] == "payload_too_large"
    assert "proxy" in body["detail"]


def test_body_just_over_1_mib_reaches_django_for_its_own_413(start_proxy, tls):
    _, https_port = start_proxy()
    response = request(
        https_port,
        "POST",
        "/api/v1/auth/logout/",
        tls=tls,
        body=b" " * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "proxy" not in response.json()["detail"]


def test_ingest_bodies_stay_in_memory_up_to_the_limit(start_proxy, tls, tmp_path):
    """nginx buffers a body larger than client_body_buffer_size (16k) in a temporary file, which cost each batch
    ~40 ms on its way to the app server; the ingest location keeps bodies up to the limit in memory. Other locations do
    not (the warning nginx logs then shows that this check can see it)."""
    _, https_port = start_proxy()
    reading = {"device_id": "00000000-0000-4000-8000-000000000000", "timestamp": "2026-11-27T12:00:00Z"}
    batch = json.dumps([{**reading, "metrics": {"temperature": 20.5, "humidity": 40.0}}] * 1000).encode()
    assert len(batch) > 64 * 1024
    headers = {"Content-Type": "application/json"}
    log = tmp_path / "nginx-0" / "error.log"
    ingest = request(https_port, "POST", "/api/v1/telemetry/ingest/", tls=tls, body=batch, headers=headers)
    assert ingest.status == 400, ingest.body  # an unknown device: the body reached Django
    assert "buffered to a temporary file" not in log.read_text()
    request(https_port, "POST", "/api/v1/auth/logout/", tls=tls, body=batch, headers=headers)
    assert "buffered to a temporary file" in log.read_text()


def test_clients_cannot_dodge_the_login_throttle_with_x_forwarded_for(start_proxy, tls):
    """The login protection keys on the address in X-Forwarded-For (from a trusted proxy): nginx must replace a
    client's own, not append to it. AUTH_THROTTLE_RATE=3/min: the fourth failure from one address is refused."""
    _, https_port = start_proxy()
    statuses = [
        request(
            https_port,
            "POST",
            "/api/v1/auth/token/",
            tls=tls,
            body=b'{"username": "nobody", "password": "wrong"}',
            headers={"Content-Type": "application/json", "X-Forwarded-For": f"203.0.113.{attempt}"},
        ).status
        for attempt in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def _ingest_burst(https_port, tls, count=12):
    return [
        request(https_port, "POST", INGEST, tls=tls, body=b"[]", headers={"Content-Type": "application/json"})
        for _ in range(count)
    ]


def test_ingest_rate_limit_answers_429_problems(start_proxy, tls):
    _, https_port = start_proxy(NGINX_INGEST_RATE="1r/s", NGINX_INGEST_BURST="1")
    # Django may answer 400 or 404 to this body: only the proxy's 429s count.
    limited = [response for response in _ingest_burst(https_port, tls) if response.status == 429]
    assert limited
    body = assert_problem(limited[0], 429)
    assert body["code"] == "throttled"
    assert limited[0].headers["Retry-After"] == "1"
    assert limited[0].headers["Strict-Transport-Security"] == "max-age=31536000"
    # Only ingest is limited.
    assert request(https_port, "GET", "/api/v1/health/", tls=tls).status == 200


def test_ingest_rate_limit_can_be_switched_off(start_proxy, tls):
    _, https_port = start_proxy(NGINX_INGEST_RATE="1r/s", NGINX_INGEST_BURST="1", NGINX_INGEST_RATE_LIMIT="off")
    assert all(response.status != 429 for response in _ingest_burst(https_port, tls))


def _gateway_burst(https_port, tls, *, clients=8, each=150):
    """What a gateway sends when its devices report at once: ``clients`` keep-alive connections from one address,
    ``each`` requests apiece, as fast as they go. The statuses."""

    def client(_):
        connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=30, context=tls)
        try:
            statuses = []
            for _ in range(each):
                connection.request("POST", INGEST, body=b"[]", headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            return statuses
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [status for statuses in pool.map(client, range(clients)) for status in statuses]


def test_the_default_ingest_ceiling_lets_a_gateway_through(start_proxy, tls):
    """The proxy's ceiling per client address is above a whole fleet behind one gateway (100 devices at their own
    limit of 10 requests a second): 1,200 requests at once from one address all reach the app (which answers 400
    to these bodies), where the former 100 r/s (burst 200) refused most of them."""
    assert COMPOSE_INGEST_CEILING == {"NGINX_INGEST_RATE": "1000r/s", "NGINX_INGEST_BURST": "2000"}
    _, https_port = start_proxy()
    assert 429 not in _gateway_burst(https_port, tls)
    _, former_port = start_proxy(NGINX_INGEST_RATE="100r/s", NGINX_INGEST_BURST="200")
    assert 429 in _gateway_burst(former_port, tls)


def test_a_device_over_its_rate_gets_the_apps_429_through_the_proxy(start_proxy, tls):
    """The per-device limit lives in the app (nginx cannot read the body); its 429 passes the proxy as it is."""
    _, https_port = start_proxy()
    device, other = DeviceFactory(), DeviceFactory()
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def send(target, index):
        timestamp = (now - timedelta(seconds=index)).isoformat().replace("+00:00", "Z")
        body = json.dumps({"device_id": str(target.pk), "timestamp": timestamp, "metrics": {"t": index}})
        return request(https_port, "POST", INGEST, tls=tls, body=body, headers={"Content-Type": "application/json"})

    assert [send(device, index).status for index in range(3)] == [201, 201, 201]  # INGEST_DEVICE_RATE=3/min
    limited = send(device, 3)
    body = assert_problem(limited, 429)
    assert body["code"] == "throttled"
    assert str(device.pk) in body["detail"]  # the app's problem, not the proxy's
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert send(other, 0).status == 201


def test_a_keyed_device_through_the_proxy(start_proxy, tls):
    _, https_port = start_proxy()
    device = DeviceFactory()
    _, key = ingest_key_create(name="gateway", devices=[device])
    timestamp = (datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    body = json.dumps({"device_id": str(device.pk), "timestamp": timestamp, "metrics": {"t": 1}})
    headers = {"Content-Type": "application/json"}
    refused = request(https_port, "POST", INGEST, tls=tls, body=body, headers=headers)
    assert_problem(refused, 401)
    assert refused.headers["WWW-Authenticate"] == 'Device realm="telemetry ingest"'
    accepted = request(
        https_port, "POST", INGEST, tls=tls, body=body, headers={**headers, "Authorization": f"Device {key}"}
    )
    assert accepted.status == 201, accepted.body


def test_unreachable_application_is_a_502_problem(start_proxy, tls):
    _, https_port = start_proxy(NGINX_UPSTREAM=f"127.0.0.1:{free_port()}")
    body = assert_problem(request(https_port, "GET", "/api/v1/users/", tls=tls), 502)
    assert body["code"] == "bad_gateway"
