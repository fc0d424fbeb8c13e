"""Fault injection against real processes: a PostgreSQL cluster of this package's own (the suite's cluster must
survive, and it runs with fsync and synchronous_commit off), the app server (granian) and the worker as
subprocesses, clients over loopback HTTP. Every test has a hard time limit and stops every process it started,
whatever happens.

The cluster runs with PostgreSQL's durable defaults (fsync, synchronous_commit on): that is what is under test.
"""

import contextlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

# The proxy fixtures (nginx on the production template, the app server on the test database) for test_transport.py.
from bench.stack import free_port, port_open
from tests.deploy.test_proxy_tls import app_server, certificate, start_proxy, tls  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
INGEST = "/api/v1/telemetry/ingest/"
HEALTH = "/api/v1/health/"
ADMIN_PASSWORD = "reliability-admin-password"  # a throwaway cluster's test user, deleted with it
# The app server sits behind the TLS proxy in production; the proxy's header keeps Django from redirecting.
PROXIED = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code", "errors"}

# Numbers reported at the end of the run (and copied into docs/reliability.md).
RESULTS = {}


def _can_run_postgres():
    if not (PG_BIN / "initdb").exists():
        return "PostgreSQL 15 server binaries are not installed (make test installs them)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user: initdb refuses to run as root"
    return None


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.section("reliability numbers")
        for name, numbers in RESULTS.items():
            terminalreporter.write_line(f"{name}: {json.dumps(numbers, sort_keys=True)}")


# --- time limits and processes ---------------------------------------------------------------------------------


class HardTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def hard_timeout(request):
    """Fails the test (and so runs every fixture's cleanup) when it runs longer than its `time_limit` mark
    (default 60 s): SIGALRM interrupts whatever the main thread is blocked in."""
    marker = request.node.get_closest_marker("time_limit")
    seconds = marker.args[0] if marker else 60

    def expire(signum, frame):
        raise HardTimeout(f"{request.node.name} exceeded its time limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): the hard limit of a reliability test (default 60 s)")


def wait_for(condition, *, timeout, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def stop_process(process, *, timeout=10):
    """SIGTERM, then SIGKILL: only the process we started (and its process group, for the app server's workers)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    # Workers a SIGKILLed master left behind are in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def children_of(pid):
    """Pids whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces: the parent pid follows the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_age(pid):
    """Seconds since ``pid`` started (0 when it is gone), from /proc."""
    try:
        started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0.0
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started / os.sysconf("SC_CLK_TCK")


# --- the private PostgreSQL cluster ----------------------------------------------------------------------------


class Cluster:
    """PostgreSQL 15 + TimescaleDB in a temporary directory, on a free port and a private socket: on loopback, or
    on ``host`` inside the network namespace ``netns`` (tests/reliability/test_bounded_waits.py)."""

    def __init__(self, directory, port, *, host="127.0.0.1", netns=None):
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = port
        self.host = host
        self.netns = netns
        self._frozen = []  # pids freeze() stopped
        self.password = secrets.token_hex(16)
        self.database_url = f"postgres://iothub:{self.password}@{host}:{port}/iothub"

    def _as_postgres(self, *command, timeout=60, check=True):
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        if self.netns:
            command = ("ip", "netns", "exec", self.netns, *command)
        result = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise AssertionError(f"{command} failed: {result.stderr}\n{log}")
        return result

    def init(self):
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"""
listen_addresses = '{self.host}'
port = {self.port}
unix_socket_directories = '{self.directory}'
shared_preload_libraries = 'timescaledb'
max_connections = 100
max_worker_processes = 16
timescaledb.telemetry_level = off
"""
            )
        if self.host != "127.0.0.1":
            # initdb lets loopback clients in; the namespace's peers are on the server address's own subnet.
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet scram-sha-256\n")

    def start(self):
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self):
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def running(self):
        status = self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def ensure_running(self):
        if not self.running():
            self.start()

    def postmaster_pid(self):
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill(self):
        """SIGKILL the postmaster and every backend at once: a crash, recovered from the WAL at the next start."""
        postmaster = self.postmaster_pid()
        pids = [postmaster, *children_of(postmaster)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout=10, message="postgres exit")
        return len(pids)

    def freeze(self):
        """SIGSTOP the postmaster, then every backend: connections stay open and the kernel still acknowledges
        their packets, but nothing answers (a hung host)."""
        postmaster = self.postmaster_pid()
        os.kill(postmaster, signal.SIGSTOP)
        self._frozen = [postmaster, *children_of(postmaster)]
        for pid in self._frozen[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def connect(self, dbname="iothub"):
        """A superuser connection over the private socket (autocommit), for the tests' own checks."""
        conn = psycopg2.connect(host=str(self.directory), port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = True
        return conn

    def query(self, sql, params=None):
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else None

    def remove(self):
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.thaw()
            stop = self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False
            )
            if stop.returncode != 0 and (self.data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def app_environment(cluster, **overrides):
    """The environment the app server, the worker and manage.py get: production settings (DEBUG off) on the
    cluster."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "DJANGO_SETTINGS_MODULE": "iothub.settings",
        "DATABASE_URL": cluster.database_url,
        "DJANGO_SECRET_KEY": cluster.password * 3,
        "JWT_SIGNING_KEY": cluster.password * 4,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        # The faults here are driven by load on a few devices, far above a device's own rate: unlimited (the rate
        # is tested in tests/telemetry/test_ingest_keys.py and through nginx in tests/deploy).
        "INGEST_DEVICE_RATE": "1000000/s",
        **overrides,
    }


def manage(cluster, *arguments, timeout=120, **environment):
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=app_environment(cluster, **environment),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


SEED = """
import json
from iothub.models import Role, User
from telemetry.models import Device, DeviceType
admin = User.objects.create_user("reliability-admin", password=%r, role=Role.ADMIN)
device_type = DeviceType.objects.create(
    name="reliability sensor", metrics=[{"name": name} for name in ("temperature", "humidity", "pressure")]
)
devices = [
    Device.objects.create(name=f"sensor {n}", serial_number=f"REL-{n:04d}", device_type=device_type)
    for n in range(%d)
]
print(json.dumps([str(device.pk) for device in devices]))
"""


@dataclass
class Stack:
    cluster: Cluster
    devices: list
    logs: Path
    processes: list = field(default_factory=list)

    def environment(self, **overrides):
        return app_environment(self.cluster, **overrides)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The migrated private cluster with an admin and 40 devices, shared by the reliability tests (each test
    uses devices of its own). Removed at the end of the session."""
    reason = _can_run_postgres()
    if reason:
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="iothub-reliability-", dir="/var/tmp"))
    directory.chmod(0o755)
    cluster = Cluster(directory, free_port())
    try:
        cluster.init()
        cluster.start()
        with contextlib.closing(cluster.connect("postgres")) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE ROLE iothub LOGIN CREATEDB PASSWORD %s", [cluster.password])
            cursor.execute("CREATE DATABASE iothub OWNER iothub")
        manage(cluster, "migrate", "--noinput", timeout=300)
        devices = json.loads(manage(cluster, "shell", "-c", SEED % (ADMIN_PASSWORD, 40)).strip().splitlines()[-1])
        yield Stack(cluster=cluster, devices=devices, logs=tmp_path_factory.mktemp("reliability-logs"))
    finally:
        cluster.remove()


@pytest.fixture
def processes():
    """Start subprocesses through ``processes.start(name, command, env)``; all are stopped after the test."""

    class Processes:
        def __init__(self):
            self.started = []

        def start(self, command, *, env, log):
            output = log.open("w")
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
            output.close()
            process.log = log
            self.started.append(process)
            return process

    running = Processes()
    yield running
    for process in reversed(running.started):
        stop_process(process)


@pytest.fixture
def start_web_server(stack, processes, tmp_path):
    """start_web_server(workers=, threads=, **environment) -> Server: the app server as the container runs it
    (``python -m iothub.serve``: granian) on a free loopback port."""

    def start(*, workers=2, threads=2, **environment):
        port = free_port()
        log = tmp_path / f"web-{port}.log"
        process = processes.start(
            [sys.executable, "-m", "iothub.serve"],
            env=stack.environment(
                WEB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers), WEB_THREADS=str(threads), **environment
            ),
            log=log,
        )
        try:
            wait_for(lambda: port_open(port) or process.poll() is not None, timeout=30, message="the app server")
        finally:
            if process.poll() is not None:
                raise AssertionError(f"the app server exited:\n{log.read_text()[-3000:]}")
        server = Server(port=port, process=process, workers=workers)
        wait_for(lambda: len(server.worker_pids()) == workers, timeout=30, message="the app server's workers")
        return server

    return start


# --- HTTP ------------------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed: float

    def json(self):
        return json.loads(self.body)


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    workers: int

    def worker_pids(self):
        return children_of(self.process.pid)

    def listening_sockets(self):
        """Sockets listening on the server's port, from /proc/net/tcp: granian's workers listen each on a socket
        of their own (SO_REUSEPORT), opened once the worker has loaded the app."""
        local = f"0100007F:{self.port:04X}"
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return sum(1 for line in lines if line.split()[1] == local and line.split()[3] == "0A")

    def oldest_worker(self, *, older_than=0.0):
        """The pid of the worker that has run longest, if it has run more than ``older_than`` seconds."""
        ages = {pid: process_age(pid) for pid in self.worker_pids()}
        pid = max(ages, key=ages.get, default=None)
        return pid if pid is not None and ages[pid] > older_than else None

    def kill_worker(self, pid):
        assert pid in self.worker_pids()
        os.kill(pid, signal.SIGKILL)

    def request(self, method, path, *, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        started = time.monotonic()
        try:
            data = json.dumps(body).encode() if body is not None else None
            all_headers = {**PROXIED, **({"Content-Type": "application/json"} if data else {}), **(headers or {})}
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return Response(response.status, response.headers, response.read(), time.monotonic() - started)
        finally:
            conn.close()

    def token(self):
        response = self.request(
            "POST", "/api/v1/auth/token/", body={"username": "reliability-admin", "password": ADMIN_PASSWORD}
        )
        assert response.status == 200, response.body
        return response.json()["access"]


def assert_problem(response, status, code=None):
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json", response.body
    body = response.json()
    assert body.keys() >= PROBLEM_MEMBERS, body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


class Timestamps:
    """Distinct reading times, one millisecond apart, within the ingest window (an hour ago onwards)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next = int((time.time() - 3600) * 1000)

    def take(self, count):
        with self._lock:
            first, self._next = self._next, self._next + count
        return [
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}000Z"
            for ms in range(first, first + count)
        ]

    @staticmethod
    def milliseconds(stamp):
        return round(datetime.fromisoformat(stamp).timestamp() * 1000)


@pytest.fixture(scope="session")
def timestamps():
    return Timestamps()
