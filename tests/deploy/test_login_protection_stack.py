"""The brute-force protection through the real stack: two app servers of two workers each on the test database
(as two web containers would be), and the production nginx template in front of one of them over TLS, where the
client address matters. Loopback only; every loop is a handful of requests.

Before issue 18 the token throttle counted in each worker's memory: wrong passwords spread over workers were all
answered 401, and Admin's login had no limit at all."""

import http.client
import json
import os
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from bench.nginx import ROOT, write_config
from bench.stack import free_port, port_open
from iothub.models import LoginCounter, LoginCounterKind, User
from tests.deploy.test_proxy_tls import NGINX, Response, assert_problem, request, stop, wait_until

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    # The app server is another process: it sees only what is committed.
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "stack-test-passphrase"
LIMIT = 3  # LOGIN_FAILURE_LIMIT
ADDRESS_LIMIT = 8  # AUTH_THROTTLE_RATE per minute
TOKEN = "/api/v1/auth/token/"
ADMIN_LOGIN = "/admin/login/"
# The app server behind the proxy: the header keeps Django from redirecting to HTTPS.
PROXIED = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1", "Content-Type": "application/json"}


def create_user(username, role="viewer"):
    """A user whose hash the servers check quickly: PBKDF2 (in their hasher list) with few iterations."""
    hashed = PBKDF2PasswordHasher().encode(PASSWORD, salt=f"salt{username}", iterations=1000)
    return User.objects.create(username=username, password=hashed, role=role)


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory):
    """Two app servers (``python -m iothub.serve``), two workers each, on the test database: [(port, access log)]."""
    database = connection.settings_dict
    database_url = "postgres://{}:{}@{}:{}/{}".format(
        *(quote(str(database[key]), safe="") for key in ("USER", "PASSWORD", "HOST", "PORT", "NAME"))
    )
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DEBUG": "0",
        "LOGIN_FAILURE_LIMIT": str(LIMIT),
        "LOGIN_LOCKOUT_SECONDS": "600",
        "AUTH_THROTTLE_RATE": f"{ADDRESS_LIMIT}/min",
    }
    # Admin's pages need the collected static files (the manifest) under production settings.
    environment["DJANGO_STATIC_ROOT"] = str(tmp_path_factory.mktemp("static"))
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert collected.returncode == 0, collected.stderr
    started, served = [], []
    try:
        for number in range(2):
            port = free_port()
            directory = tmp_path_factory.mktemp(f"web-{number}")
            access_log, log = directory / "access.log", directory / "web.log"
            with log.open("w") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "iothub.serve"],
                    cwd=ROOT,
                    # The access log starts each line with the worker's pid: which process served each attempt.
                    env={
                        **environment,
                        "WEB_BIND": f"127.0.0.1:{port}",
                        **{"WEB_CONCURRENCY": "2", "WEB_THREADS": "2", "WEB_ACCESS_LOG": str(access_log)},
                    },
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            started.append(process)
            wait_until(lambda port=port: port_open(port), process, log)
            served.append((port, access_log))
        yield served
    finally:
        for process in started:
            stop(process)


@pytest.fixture(scope="module")
def proxy(servers, certificate, tmp_path_factory):
    """nginx on the production template in front of the first server: its HTTPS port."""
    https_port, http_port = free_port(), free_port()
    directory = tmp_path_factory.mktemp("nginx")
    command = write_config(
        directory,
        {
            "NGINX_HTTP_PORT": f"127.0.0.1:{http_port}",
            "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
            "NGINX_HTTPS_PORT_SUFFIX": f":{https_port}",
            "NGINX_UPSTREAM": f"127.0.0.1:{servers[0][0]}",
            "NGINX_INGEST_RATE": "1000r/s",
            "NGINX_INGEST_BURST": "2000",
            "NGINX_INGEST_RATE_LIMIT": "on",
            "NGINX_CERT_DIR": str(certificate),
        },
    )
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(https_port), process, directory / "error.log")
        yield https_port
    finally:
        stop(process)


def direct_login(port, username, password="wrong"):
    """To one app server, on a new connection, as the proxy would forward it (client: the loopback peer)."""
    body = json.dumps({"username": username, "password": password}).encode()
    return request(port, "POST", TOKEN, body=body, headers=PROXIED)


def proxied(https_port, tls, method, path, *, source="127.0.0.1", body=None, headers=None):
    """Through nginx over TLS from the loopback address ``source`` (the whole 127.0.0.0/8 is ours)."""
    conn = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=tls, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


def proxied_login(https_port, tls, username, password="wrong", *, source="127.0.0.1", headers=None):
    body = json.dumps({"username": username, "password": password}).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return proxied(https_port, tls, "POST", TOKEN, source=source, body=body, headers=all_headers)


def worker_pids(access_log):
    # iothub/serve.py's access log starts with the pid as <1234>.
    return [int(line.split()[0].strip("<>")) for line in access_log.read_text().splitlines() if f" {TOKEN} " in line]


def test_the_attempt_after_the_limit_is_refused_whichever_worker_serves_it(servers):
    create_user("alice")
    (first, first_log), (second, second_log) = servers
    # Wrong passwords alternately to two servers (four worker processes in all).
    ports = [first, second] * 3
    statuses = [direct_login(port, "alice").status for port in ports[:LIMIT]]
    assert statuses == [401] * LIMIT
    refused = [direct_login(port, "alice") for port in ports[LIMIT : LIMIT + 2]]
    for response in refused:
        body = assert_problem(response, 429)
        assert body["code"] == "throttled"
        assert 590 <= int(response.headers["Retry-After"]) <= 600
    # Locked means not even the right password is checked, on either server.
    assert direct_login(first, "alice", PASSWORD).status == 429
    assert direct_login(second, "alice", PASSWORD).status == 429
    counter = LoginCounter.objects.get(kind=LoginCounterKind.ACCOUNT, username="alice")
    assert counter.attempts == LIMIT
    # More than one process served the attempts: per-process counters would have let them all through.
    served_by = set(worker_pids(first_log)) | set(worker_pids(second_log))
    assert len(served_by) >= 2, served_by


def test_a_success_on_one_server_resets_the_count_the_other_server_made(servers):
    create_user("alice")
    (first, _), (second, _) = servers
    assert [direct_login(first, "alice").status for _ in range(LIMIT - 1)] == [401] * (LIMIT - 1)
    assert direct_login(second, "alice", PASSWORD).status == 200
    assert [direct_login(first, "alice").status for _ in range(LIMIT + 1)] == [401] * LIMIT + [429]


def test_behind_the_proxy_other_users_and_other_addresses_are_not_affected(proxy, tls):
    create_user("alice")
    create_user("bob")
    assert [proxied_login(proxy, tls, "alice").status for _ in range(LIMIT)] == [401] * LIMIT
    response = proxied_login(proxy, tls, "alice", PASSWORD)
    assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    # A forged X-Forwarded-For is replaced by nginx: the client stays who it is.
    forged = proxied_login(proxy, tls, "alice", PASSWORD, headers={"X-Forwarded-For": "203.0.113.9"})
    assert forged.status == 429
    # The same user from another address, and another user from the same address, log in.
    assert proxied_login(proxy, tls, "alice", PASSWORD, source="127.0.0.2").status == 200
    assert proxied_login(proxy, tls, "bob", PASSWORD).status == 200
    counted = LoginCounter.objects.filter(attempts__gt=0).values_list("kind", "username", "client_address")
    assert set(counted) == {("account", "alice", "127.0.0.1"), ("address", "", "127.0.0.1")}


def test_behind_the_proxy_a_spray_of_usernames_is_throttled_per_address(proxy, tls):
    create_user("alice")
    statuses = [proxied_login(proxy, tls, f"guess{n}").status for n in range(ADDRESS_LIMIT + 1)]
    assert statuses == [401] * ADDRESS_LIMIT + [429]
    assert proxied_login(proxy, tls, "alice", PASSWORD).status == 429
    assert proxied_login(proxy, tls, "alice", PASSWORD, source="127.0.0.2").status == 200


class AdminBrowser:
    """Django Admin's login form over HTTPS through the proxy, with its CSRF cookie, from one address."""

    def __init__(self, https_port, tls, source):
        self.https_port, self.tls, self.source = https_port, tls, source
        self.origin = f"https://127.0.0.1:{https_port}"
        page = proxied(https_port, tls, "GET", ADMIN_LOGIN, source=source)
        assert page.status == 200, page.body
        cookies = SimpleCookie()
        for header in page.headers.get_all("Set-Cookie"):
            cookies.load(header)
        self.csrf_cookie = cookies["csrftoken"].value
        self.csrf_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()

    def login(self, username, password="wrong"):
        form = {"csrfmiddlewaretoken": self.csrf_token, "username": username, "password": password, "next": "/admin/"}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={self.csrf_cookie}",
            "Origin": self.origin,
            "Referer": self.origin + ADMIN_LOGIN,
        }
        body = urlencode(form).encode()
        return proxied(self.https_port, self.tls, "POST", ADMIN_LOGIN, source=self.source, body=body, headers=headers)


def test_admin_login_behind_the_proxy_is_protected_too(proxy, tls):
    create_user("root", role="admin")
    browser = AdminBrowser(proxy, tls, "127.0.0.1")
    for _ in range(LIMIT):
        response = browser.login("root")
        assert response.status == 200
        assert b"Please enter the correct username and password" in response.body
    refused = browser.login("root", PASSWORD)
    assert refused.status == 429
    assert b"Too many failed logins to this account from your address. Try again in 10 minute(s)." in refused.body
    assert int(refused.headers["Retry-After"]) > 0
    # One protection for both paths: the API is locked for this pair as well.
    assert proxied_login(proxy, tls, "root", PASSWORD).status == 429
    elsewhere = AdminBrowser(proxy, tls, "127.0.0.2").login("root", PASSWORD)
    assert elsewhere.status == 302, elsewhere.body
    assert elsewhere.headers["Location"] == "/admin/"
