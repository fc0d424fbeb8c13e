"""Bounded waits on a database that stops answering under connections already open (docs/operations.md,
"Timeouts"):

- frozen (every PostgreSQL process stopped with SIGSTOP): the kernel still acknowledges every packet, so no TCP
  timeout can fire; the proxy's ``proxy_read_timeout`` bounds an API caller's wait, with nginx's 504 problem —
  through the production nginx template, over TLS;
- a statement stuck on a lock: the web server's ``statement_timeout`` cancels it, a 503 problem before the proxy
  gives up, and the database stops working on it; commands (migrate, refreshes, the worker) have no such limit;
- partitioned (packets dropped): libpq's keepalives and ``tcp_user_timeout`` from the settings break the connection
  within ``DB_TCP_TIMEOUT``, and the app server answers 503s within ``DB_TCP_TIMEOUT + DB_CONNECT_TIMEOUT``; proven
  in two network namespaces this module creates, linked by a veth pair of their own.
"""

import contextlib
import http.client
import json
import queue
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings

from bench.nginx import NGINX, TEMPLATE, write_config
from bench.stack import free_port, port_open
from tests.reliability.conftest import (
    ADMIN_PASSWORD,
    HEALTH,
    INGEST,
    PROXIED,
    RESULTS,
    ROOT,
    SEED,
    Cluster,
    Response,
    _can_run_postgres,
    app_environment,
    assert_problem,
    manage,
    stop_process,
    wait_for,
)

# What an API caller may wait, at most, whatever the database does: nginx's bound for the API, and a margin.
PROXY_READ_TIMEOUT = int(re.search(r"proxy_read_timeout (\d+)s;", TEMPLATE.read_text()).group(1))
WITHIN = PROXY_READ_TIMEOUT + 3


@pytest.fixture
def start_nginx(certificate, tmp_path):
    """start_nginx(upstream_port) -> HTTPS port: nginx on the production template in front of that app server."""
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    started = []

    def start(upstream_port):
        http_port, https_port = free_port(), free_port()
        directory = tmp_path / f"nginx-{len(started)}"
        directory.mkdir()
        command = write_config(
            directory,
            {
                "NGINX_HTTP_PORT": f"127.0.0.1:{http_port}",
                "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
                "NGINX_HTTPS_PORT_SUFFIX": f":{https_port}",
                "NGINX_UPSTREAM": f"127.0.0.1:{upstream_port}",
                "NGINX_INGEST_RATE": "100r/s",
                "NGINX_INGEST_BURST": "200",
                "NGINX_INGEST_RATE_LIMIT": "off",
                "NGINX_CERT_DIR": str(certificate),
            },
        )
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        started.append(process)
        wait_for(lambda: port_open(https_port) or process.poll() is not None, timeout=30, message="nginx")
        assert process.poll() is None, (directory / "error.log").read_text()[-3000:]
        return https_port

    yield start
    for process in started:
        stop_process(process)


def https_request(port, tls, method, path, *, body=None, headers=None, timeout=WITHIN + 10):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    started = time.monotonic()
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read(), time.monotonic() - started)
    finally:
        conn.close()


def _token(https, tls):
    response = https_request(
        https, tls, "POST", "/api/v1/auth/token/", body={"username": "reliability-admin", "password": ADMIN_PASSWORD}
    )
    assert response.status == 200, response.body
    return {"Authorization": f"Bearer {response.json()['access']}"}


def _reading(device, timestamps):
    return {"device_id": device, "timestamp": timestamps.take(1)[0], "metrics": {"temperature": 21.5}}


def _api_through_nginx(start_web_server, start_nginx, tls, *, threads):
    """The app server (one worker) behind nginx: the HTTPS port and an admin's Authorization header."""
    server = start_web_server(workers=1, threads=threads)
    https = start_nginx(server.port)
    return https, _token(https, tls)


def _all_at_once(*calls):
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


@pytest.mark.time_limit(90)
def test_a_database_frozen_under_open_connections_costs_an_api_caller_seconds(
    stack, start_web_server, start_nginx, tls, timestamps
):
    device = stack.devices[2]
    stack.cluster.ensure_running()
    # One worker thread: every request meets the persistent connection that the first requests opened.
    https, auth = _api_through_nginx(start_web_server, start_nginx, tls, threads=1)
    read = f"/api/v1/devices/{device}/"
    for _ in range(3):
        assert https_request(https, tls, "POST", INGEST, body=_reading(device, timestamps)).status == 201
        assert https_request(https, tls, "GET", read, headers=auth).status == 200

    unanswered = _reading(device, timestamps)
    stack.cluster.freeze()
    try:
        answers = _all_at_once(
            lambda: https_request(https, tls, "POST", INGEST, body=unanswered),
            lambda: https_request(https, tls, "GET", read, headers=auth),
            lambda: https_request(https, tls, "GET", HEALTH),
        )
    finally:
        stack.cluster.thaw()
    for response in answers:
        assert_problem(response, 504, "gateway_timeout")
        assert response.elapsed < WITHIN, response.elapsed

    thawed = time.monotonic()
    # Nothing restarted: the stuck requests finish and the next ones are served.
    wait_for(lambda: https_request(https, tls, "GET", HEALTH).status == 200, timeout=20, message="health 200")
    recovered_after = time.monotonic() - thawed
    assert https_request(https, tls, "POST", INGEST, body=_reading(device, timestamps)).status == 201
    assert https_request(https, tls, "GET", read, headers=auth).status == 200
    # A 504 is no refusal: the reading the caller gave up on was stored when the database woke up (a retry is a
    # duplicate, see docs/reliability.md).
    stored = stack.cluster.query(
        "SELECT count(*) FROM telemetry WHERE device_id = %s AND time = %s", [device, unanswered["timestamp"]]
    )
    assert stored == [(1,)]
    RESULTS["database frozen under open connections (through nginx)"] = {
        "proxy_read_timeout_s": PROXY_READ_TIMEOUT,
        "answered_504_after_s": [round(response.elapsed, 2) for response in answers],
        "healthy_after_thaw_s": round(recovered_after, 2),
    }


@pytest.mark.time_limit(60)
def test_a_statement_stuck_on_a_lock_is_cancelled_with_a_503_before_the_proxy_gives_up(
    stack, start_web_server, start_nginx, tls, timestamps
):
    statement_timeout = settings.DB_STATEMENT_TIMEOUT  # the default: make test sets no DB_STATEMENT_TIMEOUT
    assert 0 < statement_timeout < PROXY_READ_TIMEOUT
    device = stack.devices[3]
    stack.cluster.ensure_running()
    https, auth = _api_through_nginx(start_web_server, start_nginx, tls, threads=2)
    read = f"/api/v1/devices/{device}/"
    assert https_request(https, tls, "GET", read, headers=auth).status == 200

    locker = psycopg2.connect(
        host=str(stack.cluster.directory), port=stack.cluster.port, user="postgres", dbname="iothub"
    )
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
        answers = _all_at_once(
            lambda: https_request(https, tls, "POST", INGEST, body=_reading(device, timestamps)),
            lambda: https_request(https, tls, "GET", read, headers=auth),
        )
        for response in answers:
            assert_problem(response, 503, "database_unavailable")
            assert statement_timeout - 0.5 < response.elapsed < PROXY_READ_TIMEOUT, response.elapsed
        # The database gave up too: nothing of those requests still waits for the lock.
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'iothub'"
        assert stack.cluster.query(waiting) == [(0,)]
    finally:
        locker.close()
    assert https_request(https, tls, "POST", INGEST, body=_reading(device, timestamps)).status == 201
    RESULTS["statement stuck on a lock (through nginx)"] = {
        "statement_timeout_s": statement_timeout,
        "answered_503_after_s": [round(response.elapsed, 2) for response in answers],
    }


def test_commands_and_the_worker_have_no_statement_timeout(stack):
    """manage.py runs migrate, refresh_aggregates and run_worker, whose statements may rightly run long."""
    stack.cluster.ensure_running()
    script = (
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SELECT pg_sleep(2)')\n"
        "    cursor.execute('SHOW statement_timeout')\n"
        "    print(cursor.fetchone()[0])\n"
    )
    output = manage(stack.cluster, "shell", "-c", script, DB_STATEMENT_TIMEOUT="1")
    assert output.strip().splitlines()[-1] == "0"


# --- a partition, in network namespaces of this test's own ---------------------------------------------------


class Link:
    """Two network namespaces, ``client`` and ``server``, joined by a veth pair on a private link-local /30 (no
    other route, nothing in the host's own namespace); ``partition()`` drops every packet on the server's side."""

    SERVER_ADDRESS = "169.254.77.2"

    def __init__(self):
        suffix = secrets.token_hex(4)
        self.client = f"iothub-bw-{suffix}-client"
        self.server = f"iothub-bw-{suffix}-server"
        self.created = []

    @staticmethod
    def ip(*arguments):
        subprocess.run(["ip", *arguments], check=True, capture_output=True, text=True, timeout=30)

    def create(self):
        for namespace in (self.client, self.server):
            self.ip("netns", "add", namespace)
            self.created.append(namespace)
            self.ip("-n", namespace, "link", "set", "lo", "up")
        self.ip(
            "-n",
            self.client,
            "link",
            "add",
            "veth-db",
            "type",
            "veth",
            "peer",
            "name",
            "veth-app",
            "netns",
            self.server,
        )
        self.ip("-n", self.client, "addr", "add", "169.254.77.1/30", "dev", "veth-db")
        self.ip("-n", self.server, "addr", "add", f"{self.SERVER_ADDRESS}/30", "dev", "veth-app")
        self.ip("-n", self.client, "link", "set", "veth-db", "up")
        self.ip("-n", self.server, "link", "set", "veth-app", "up")

    def _iptables(self, *rule):
        subprocess.run(
            ["ip", "netns", "exec", self.server, "iptables", "-w", *rule],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def partition(self):
        self._iptables("-A", "INPUT", "-i", "veth-app", "-j", "DROP")
        self._iptables("-A", "OUTPUT", "-o", "veth-app", "-j", "DROP")

    def heal(self):
        self._iptables("-F")

    def remove(self):
        # Deleting a namespace deletes its end of the veth pair, and so the pair.
        for namespace in self.created:
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)


def _cannot_partition():
    if shutil.which("ip") is None or shutil.which("iptables") is None:
        return "needs iproute2 (ip netns) and iptables"
    probe = f"iothub-bw-probe-{secrets.token_hex(4)}"
    created = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if created.returncode != 0:
        return f"cannot create a network namespace (root and CAP_SYS_ADMIN needed): {created.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=30)
    return None


def in_client_namespace(link, cluster, *arguments):
    """``manage.py ARGUMENTS`` in the client namespace, on the cluster; its output."""
    result = subprocess.run(
        ["ip", "netns", "exec", link.client, sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=app_environment(cluster),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@dataclass
class Partitionable:
    link: Link
    cluster: Cluster
    devices: list


@pytest.fixture(scope="module")
def partitionable():
    """A migrated cluster, with an admin and two devices, in the ``server`` namespace of a fresh Link; the cluster
    and then the link are removed afterwards, whatever happened."""
    reason = _can_run_postgres() or _cannot_partition()
    if reason:
        pytest.skip(reason)
    link = Link()
    directory = Path(tempfile.mkdtemp(prefix="iothub-partition-", dir="/var/tmp"))
    directory.chmod(0o755)
    cluster = Cluster(directory, 5432, host=Link.SERVER_ADDRESS, netns=link.server)
    try:
        link.create()
        cluster.init()
        cluster.start()
        with contextlib.closing(cluster.connect("postgres")) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE ROLE iothub LOGIN CREATEDB PASSWORD %s", [cluster.password])
            cursor.execute("CREATE DATABASE iothub OWNER iothub")
        in_client_namespace(link, cluster, "migrate", "--noinput")
        devices = json.loads(
            in_client_namespace(link, cluster, "shell", "-c", SEED % (ADMIN_PASSWORD, 2)).strip().splitlines()[-1]
        )
        yield Partitionable(link, cluster, devices)
    finally:
        cluster.remove()
        link.remove()


@pytest.fixture
def partition(partitionable):
    """The link of ``partitionable``, whole again after the test."""
    yield partitionable
    partitionable.link.heal()


# Runs each line of its input as one statement on Django's connection, with the app's settings, and prints how it
# went. A connection that broke is closed, as Django does at the end of a request, so the next line opens another.
CLIENT = """
import json, sys, time
from django.db import connection
for statement in sys.stdin:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
        outcome = "ok"
    except Exception as error:
        outcome = type(error).__name__ + ": " + " ".join(str(error).split())
        connection.close()
    print("answer", json.dumps({"outcome": outcome, "seconds": round(time.monotonic() - started, 3)}), flush=True)
"""


class Client:
    """CLIENT in the ``client`` namespace: ``send(sql)``, then ``answer(timeout)``."""

    def __init__(self, link, cluster, log):
        errors = log.open("w")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", link.client, sys.executable, "manage.py", "shell", "-c", CLIENT],
            cwd=ROOT,
            env=app_environment(cluster),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
        errors.close()
        self.log = log
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith("answer "):  # the shell may say things of its own
                self.lines.put(json.loads(line.removeprefix("answer ")))

    def send(self, statement):
        self.process.stdin.write(statement + "\n")
        self.process.stdin.flush()

    def answer(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer within {timeout} s:\n{self.log.read_text()[-3000:]}") from None


@pytest.mark.time_limit(120)
def test_a_partitioned_database_breaks_the_connection_within_db_tcp_timeout(partition, tmp_path):
    link, cluster = partition.link, partition.cluster
    bound = settings.DB_TCP_TIMEOUT  # the default: make test sets no DB_TCP_TIMEOUT
    client = Client(link, cluster, tmp_path / "client.log")
    try:
        client.send("SELECT 1")
        assert client.answer(timeout=60)["outcome"] == "ok"

        # A query sent into the partition: its packets are never acknowledged (tcp_user_timeout).
        link.partition()
        partitioned = time.monotonic()
        client.send("SELECT 1")
        sent_into = client.answer(timeout=bound + 30)
        sent_into_after = time.monotonic() - partitioned
        assert sent_into["outcome"].startswith("OperationalError"), sent_into
        link.heal()

        # A partition while the query waits for its answer: everything sent was acknowledged, only keepalive
        # probes can tell that the server went away.
        client.send("SELECT 1")
        assert client.answer(timeout=30)["outcome"] == "ok"
        client.send("SELECT pg_sleep(60)")
        running = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE usename = 'iothub' AND state = 'active' AND query LIKE 'SELECT pg_sleep(60)%'"
        )
        wait_for(lambda: cluster.query(running) == [(1,)], timeout=10, message="the query running")
        link.partition()
        partitioned = time.monotonic()
        waiting = client.answer(timeout=bound + 30)
        waiting_after = time.monotonic() - partitioned
        assert waiting["outcome"].startswith("OperationalError"), waiting
    finally:
        stop_process(client.process)
    for seconds in (sent_into_after, waiting_after):
        assert bound - 2 < seconds < bound + 3, (sent_into, waiting)
    RESULTS["database partitioned (packets dropped)"] = {
        "db_tcp_timeout_s": bound,
        "query_sent_into_the_partition_failed_after_s": round(sent_into_after, 2),
        "query_waiting_for_its_answer_failed_after_s": round(waiting_after, 2),
        "errors": sorted({sent_into["outcome"], waiting["outcome"]}),
    }


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: it reaches the app server inside the client namespace from this one."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


def unix_request(path, method, url, *, body=None, timeout=WITHIN + 10):
    conn = UnixHTTPConnection(path, timeout)
    started = time.monotonic()
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, url, body=data, headers={**PROXIED, "Content-Type": "application/json"})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read(), time.monotonic() - started)
    finally:
        conn.close()


def _accepts(sock):
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(sock))
        except OSError:
            return False
    return True


@pytest.mark.time_limit(90)
def test_a_partitioned_database_costs_an_api_caller_a_503_within_seconds(partition, processes, tmp_path, timestamps):
    """The app server in the client namespace, its connections open when the packets start being dropped: the app finds
    them broken within DB_TCP_TIMEOUT and a new one unreachable within DB_CONNECT_TIMEOUT: 503s, well before the
    proxy's bound."""
    link, cluster, device = partition.link, partition.cluster, partition.devices[0]
    bound = settings.DB_TCP_TIMEOUT + settings.DB_CONNECT_TIMEOUT
    assert bound < PROXY_READ_TIMEOUT
    sock = tmp_path / "web.sock"
    server = processes.start(
        ["ip", "netns", "exec", link.client, sys.executable, "-m", "iothub.serve"],
        env=app_environment(cluster, WEB_BIND=f"unix:{sock}", WEB_CONCURRENCY="1", WEB_THREADS="2"),
        log=tmp_path / "web.log",
    )
    # The socket file appears when it is bound; a connection succeeds once a worker listens on it.
    wait_for(lambda: _accepts(sock) or server.poll() is not None, timeout=30, message="the app server")
    assert server.poll() is None, server.log.read_text()[-3000:]
    for _ in range(3):
        assert unix_request(sock, "POST", INGEST, body=_reading(device, timestamps)).status == 201
        assert unix_request(sock, "GET", HEALTH).status == 200

    link.partition()
    answers = _all_at_once(
        lambda: unix_request(sock, "POST", INGEST, body=_reading(device, timestamps)),
        lambda: unix_request(sock, "GET", HEALTH),
    )
    link.heal()
    assert_problem(answers[0], 503, "database_unavailable")
    assert assert_problem(answers[1], 503, "unhealthy")["database"] == "unavailable"
    for response in answers:
        assert response.elapsed < bound + 3, response.elapsed

    healed = time.monotonic()
    wait_for(lambda: unix_request(sock, "GET", HEALTH).status == 200, timeout=20, message="health 200")
    recovered_after = time.monotonic() - healed
    assert unix_request(sock, "POST", INGEST, body=_reading(device, timestamps)).status == 201
    RESULTS["database partitioned under the app server"] = {
        "db_tcp_timeout_s": settings.DB_TCP_TIMEOUT,
        "db_connect_timeout_s": settings.DB_CONNECT_TIMEOUT,
        "answered_503_after_s": [round(response.elapsed, 2) for response in answers],
        "healthy_after_heal_s": round(recovered_after, 2),
    }
