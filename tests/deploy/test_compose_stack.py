"""`docker compose up -d --build` for real: the README's way to start the hub, on a clean copy of the repository,
with local stand-ins for the base images (no registry here), spoken to over real TLS on the published loopback
ports only. Then the paths an operator takes: restart under load, down and up, an upgrade.

Needs root and the stand-in builder (`../shared/compose-standins/build-images` beside the project, or
COMPOSE_STANDINS=/path/to/build-images); skipped otherwise. It starts the Docker engine if none answers, and
stops it again. Select it with `-m compose`, leave it out with `-m "not compose"`.
"""

import os
import re
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import orjson
import pytest

from bench.stack import free_port
from tests.deploy.test_proxy_tls import request

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(os.environ.get("COMPOSE_STANDINS") or ROOT.parent / "shared" / "compose-standins" / "build-images")
SERVICES = ("init", "db", "web", "worker", "proxy")
SECRETS = ("postgres_password", "django_secret_key", "jwt_signing_key", "django_superuser_password")
ADMIN = "admin"
API = "/api/v1"
# A fresh machine builds the stand-ins (debootstrap, TimescaleDB from source) and the app image (pip).
BUILD_TIMEOUT = 420
START_TIMEOUT = 180

pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(not STANDINS.is_file(), reason=f"no stand-in image builder at {STANDINS} (COMPOSE_STANDINS)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in builder and the Docker engine need root"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git lists the files of the clean copy"),
]

# Published on loopback only: the compose file publishes on every interface, as a deployment wants; a test stack
# with a known admin must not be reachable from the network. A file compose reads by itself, so the command stays
# the README's.
LOOPBACK_OVERRIDE = """\
# Written by tests/deploy/test_compose_stack.py.
services:
  proxy:
    ports: !override
      - "127.0.0.1:${HTTP_PORT}:80"
      - "127.0.0.1:${HTTPS_PORT}:443"
"""

# What an error looks like in the logs of granian, Django, the worker, PostgreSQL, nginx and the entrypoint.
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL|PANIC)\b|Traceback|\[(error|crit|alert|emerg)\]|entrypoint: error")
# Errors that are not faults, each for a reason:
# nginx while web restarts on purpose (test_restarting_web…): the requests of that moment get a 502 (refused, or
# reset: the app server's workers close their listening sockets with connections they had not accepted yet); or while
# one of several web containers is stopped (test_several_web…): nginx times out connecting to it and passes the
# request on.
UPSTREAM_DOWN = re.compile(
    r"\[error\].*(connect\(\) failed|upstream prematurely closed|no live upstreams"
    r"|upstream timed out \(110: Connection timed out\) while connecting to upstream"
    r"|recv\(\) failed \(104: Connection reset by peer\) while reading response header)"
)
# PostgreSQL stopping because it was asked to (the image's first-start initialisation, `down`).
ASKED_TO_STOP = re.compile(r"FATAL: +terminating background worker .* due to administrator command")
# The image initialises the database on a temporary server first; its scripts' output ends here.
INIT_DONE = "PostgreSQL init process complete"
# The Debian stand-in (PostgreSQL 15.20 + TimescaleDB 2.19.3 built from source): every job fails when the
# background scheduler runs it (SQLSTATE 24000), and runs when called (test_timescaledb_runs_the_tsl_policies).
# The official image is Alpine and pairs 2.19.3 with the PostgreSQL of its time.
STANDIN_JOB_FAILURE = re.compile(r'job \d+ threw an error|ERROR: +cannot drop portal "" while it is being set up')


def iso(moment):
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def docker_answers():
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def clean_copy(destination):
    """The files a fresh clone would have (tracked and not ignored, as they are in the work tree): no .venv,
    .local or .env."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name, follow_symlinks=False)


@dataclass
class Stack:
    project: str
    directory: Path
    http_port: int
    https_port: int
    # When web was stopped on purpose: (start, end) in UTC, for the proxy's errors of those moments.
    outages: list = field(default_factory=list)
    # Logs of the containers `down` or a rebuild removed: the last test reads the whole run.
    removed_logs: dict = field(default_factory=dict)
    tls: ssl.SSLContext | None = None

    @property
    def environment(self):
        """Only what a user would set: the suite's own DATABASE_URL and keys must not reach the stack."""
        return {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "HTTP_PORT": str(self.http_port),
            "HTTPS_PORT": str(self.https_port),
            # No first admin named: a bare `up` gets "admin", whose password init generates into the secrets volume.
            # The restart test drives one device far beyond a device's own rate (10/s): a refused reading would be
            # a PostgreSQL ERROR line in the logs test_every_log… reads.
            "INGEST_DEVICE_RATE": "10000/s",
        }

    def compose(self, *args, timeout=START_TIMEOUT, check=True):
        result = subprocess.run(
            ["docker", "compose", "-p", self.project, *args],
            cwd=self.directory,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(f"docker compose {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def exec(self, service, *command):
        return self.compose("exec", "-T", service, *command).stdout

    def manage(self, *args):
        """manage.py in the running web container, with the secrets the entrypoint loads."""
        return self.exec("web", "docker/entrypoint.sh", "manage.py", *args)

    def secret(self, name):
        return self.exec("web", "cat", f"/run/iothub-secrets/{name}")

    def container(self, service):
        return self.compose("ps", "-q", service).stdout.strip()

    def started_at(self, service):
        return subprocess.run(
            ["docker", "inspect", "--format", "{{.State.StartedAt}}", self.container(service)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def logs(self, *services, tail=None):
        args = ["logs", "--no-color", "--timestamps", *(["--tail", str(tail)] if tail else []), *services]
        result = self.compose(*args, check=False, timeout=120)
        return result.stdout + result.stderr

    def keep_logs(self):
        if self.compose("ps", "-a", "-q").stdout.strip():
            for service in SERVICES:
                self.removed_logs.setdefault(service, []).append(self.logs(service))

    def down(self):
        self.keep_logs()
        self.compose("down", timeout=300)

    def up(self, *args):
        self.keep_logs()  # a rebuild recreates containers
        self.compose("up", "-d", *args, timeout=BUILD_TIMEOUT)
        if self.tls is None:
            # cp, not exec: it works on a proxy that crashed, and wait_until_serving says so.
            certificate = self.directory.parent / "tls.crt"
            self.compose("cp", "proxy:/etc/nginx/certs/tls.crt", str(certificate))
            self.tls = ssl.create_default_context(cadata=certificate.read_text())
        self.wait_until_serving()

    def wait_until_serving(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.get("/health/").status == 200:
                    return
            except OSError:
                pass
            states = self.compose("ps", "-a", "--format", "{{.Service}} {{.State}}").stdout
            # A container that crashed at start: no use waiting for it (init is meant to exit).
            crashed = re.findall(r"^(?!init )(\S+) (?:restarting|exited|dead)$", states, re.MULTILINE)
            if crashed or time.monotonic() > deadline:
                pytest.fail(f"no healthy answer on https://127.0.0.1:{self.https_port}; crashed: {crashed}\n{states}")
            time.sleep(1)

    def call(self, method, path, payload=None, *, token=None):
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = orjson.dumps(payload) if payload is not None else None
        return request(self.https_port, method, API + path, tls=self.tls, body=body, headers=headers)

    def get(self, path, *, token=None):
        return self.call("GET", path, token=token)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack, up once for the module from a clean copy; always taken down with its volumes and images, and
    the engine stopped if this fixture started it."""
    directory = tmp_path_factory.mktemp("compose") / "iothub"
    directory.mkdir()
    clean_copy(directory)
    (directory / "docker-compose.override.yml").write_text(LOOPBACK_OVERRIDE)
    stack = Stack(f"iothub-test-{uuid.uuid4().hex[:8]}", directory, free_port(), free_port())
    started_engine = not (shutil.which("docker") and docker_answers())
    try:
        # Starts the engine if needed; builds only the stand-ins the engine does not have yet.
        subprocess.run(
            ["bash", str(STANDINS), "--project", str(directory)], check=True, timeout=BUILD_TIMEOUT, cwd=directory
        )
        try:
            stack.up("--build")
        except BaseException:
            print(stack.logs(tail=150))  # shown with the error of the first test
            raise
        yield stack
    finally:
        if shutil.which("docker") and docker_answers():
            stack.compose("down", "-v", "--rmi", "local", "--remove-orphans", check=False, timeout=300)
            # The app images the rebuild replaced (the stand-ins and the build cache stay for the next run).
            label = f"label=com.docker.compose.project={stack.project}"
            subprocess.run(["docker", "image", "prune", "-f", "--filter", label], capture_output=True, timeout=120)
        if started_engine:
            subprocess.run(["bash", str(STANDINS), "--stop-engine"], check=False, timeout=120)


@pytest.fixture(scope="module")
def admin_password(stack):
    return stack.secret("django_superuser_password")


@pytest.fixture(scope="module")
def token(stack, admin_password):
    response = stack.call("POST", "/auth/token/", {"username": ADMIN, "password": admin_password})
    assert response.status == 200, response.body
    return response.json()["access"]


@pytest.fixture(scope="module")
def device_type(stack, token):
    response = stack.call(
        "POST",
        "/device-types/",
        {"name": "thermometer", "metrics": [{"name": "temperature", "unit": "°C"}, {"name": "humidity", "unit": "%"}]},
        token=token,
    )
    assert response.status == 201, response.body
    return response.json()["id"]


@pytest.fixture
def new_device(stack, token, device_type):
    def create(name):
        response = stack.call(
            "POST", "/devices/", {"name": name, "serial_number": name, "device_type": device_type}, token=token
        )
        assert response.status == 201, response.body
        return response.json()["id"]

    return create


def ingest(stack, readings):
    response = stack.call("POST", "/telemetry/ingest/", readings)
    assert response.status == 201, response.body
    return response.json()


def stored_readings(stack, token, device, metric, start, end):
    """Every stored reading of one device and metric in [start, end), page by page."""
    query = urlencode({"start": iso(start), "end": iso(end), "metrics": metric, "order": "asc", "page_size": 500})
    path, readings = f"/devices/{device}/telemetry/?{query}", []
    while path:
        response = stack.get(path, token=token)
        assert response.status == 200, response.body
        page = response.json()
        readings += page["results"]
        path = urlsplit(page["next"])._replace(scheme="", netloc="").geturl().removeprefix(API) if page["next"] else ""
    return readings


def test_every_service_is_up_init_done(stack):
    states = {}
    for line in stack.compose(
        "ps", "-a", "--format", "{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}"
    ).stdout.splitlines():
        service, *state = line.split()
        states[service] = state
    assert states == {
        "init": ["exited", "0"],
        "db": ["running", "healthy", "0"],
        "web": ["running", "healthy", "0"],
        "worker": ["running", "0"],
        "proxy": ["running", "0"],
    }


def test_only_the_proxy_is_published_and_only_on_loopback(stack):
    published = subprocess.run(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={stack.project}", "--format", "{{.Ports}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    bindings = sorted(re.findall(r"([\d.:\[\]]+):(\d+)->(\d+)/tcp", published))
    assert bindings == sorted([("127.0.0.1", str(stack.http_port), "80"), ("127.0.0.1", str(stack.https_port), "443")])


def test_health_over_https_and_308_from_http(stack):
    response = stack.get("/health/")
    assert response.status == 200, response.body
    assert response.json()["database"] == "ok"
    assert response.headers.get_all("Strict-Transport-Security") == ["max-age=31536000"]
    redirect = request(stack.http_port, "POST", f"{API}/users/?page=2", body=b"{}")
    assert redirect.status == 308
    assert redirect.headers["Location"] == f"https://127.0.0.1:{stack.https_port}{API}/users/?page=2"


def test_a_bare_up_has_an_admin_and_the_web_log_says_how_to_read_its_password(stack, admin_password):
    log = stack.logs("web")
    assert "docker compose exec web cat /run/iothub-secrets/django_superuser_password" in log
    assert log.count("the admin's password was generated") == 1  # once, when it was created
    assert stack.call("POST", "/auth/token/", {"username": ADMIN, "password": admin_password}).status == 200


def test_login_returns_tokens_that_authenticate(stack, token):
    response = stack.get("/me/", token=token)
    assert response.status == 200, response.body
    assert (response.json()["username"], response.json()["role"]) == (ADMIN, "admin")
    assert stack.get("/me/").status == 401


def test_single_readings_and_a_batch_are_stored(stack, token, new_device):
    device = new_device("TH-INGEST")
    now = datetime.now(UTC).replace(microsecond=0)
    singles = [
        {"device_id": device, "timestamp": iso(now - timedelta(seconds=s)), "metrics": {"humidity": s}} for s in (1, 2)
    ]
    batch = [
        {"device_id": device, "timestamp": iso(now - timedelta(minutes=m)), "metrics": {"humidity": float(m)}}
        for m in range(1, 101)
    ]
    assert [ingest(stack, reading) for reading in singles] == [{"accepted": 1, "merged": 0, "duplicates": 0}] * 2
    assert ingest(stack, batch) == {"accepted": 100, "merged": 0, "duplicates": 0}
    assert ingest(stack, batch) == {"accepted": 0, "merged": 0, "duplicates": 100}

    stored = stored_readings(stack, token, device, "humidity", now - timedelta(hours=2), now + timedelta(seconds=1))
    assert sorted(reading["metrics"]["humidity"] for reading in stored) == sorted([1, 2, *range(1, 101)])


def test_aggregates_answer_per_hour(stack, token, new_device):
    device = new_device("TH-AGGREGATE")
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [(now - timedelta(minutes=7 * i), 20.5 + i % 4) for i in range(40)]  # over 4.5 hours
    ingest(stack, [{"device_id": device, "timestamp": iso(t), "metrics": {"temperature": v}} for t, v in readings])
    expected = {}
    for moment, value in readings:
        bucket = iso(moment.replace(minute=0, second=0))
        count, total = expected.get(bucket, (0, 0.0))
        expected[bucket] = (count + 1, total + value)

    start = (now - timedelta(hours=5)).replace(minute=0, second=0)
    end = now.replace(minute=0, second=0) + timedelta(hours=1)
    query = urlencode({"start": iso(start), "end": iso(end), "interval": "1h", "metrics": "temperature"})
    response = stack.get(f"/devices/{device}/telemetry/aggregate/?{query}", token=token)
    assert response.status == 200, response.body
    answered = {item["bucket"]: (item["count"], item["sum"]) for item in response.json()["results"]}
    assert answered == expected


def test_a_rule_fires_and_the_worker_delivers_its_email(stack, token, new_device):
    device = new_device("TH-RULE")
    channel = stack.call(
        "POST",
        "/notification-channels/",
        {"name": "ops mail", "kind": "email", "target": "ops@example.com"},
        token=token,
    )
    assert channel.status == 201, channel.body
    rule = stack.call(
        "POST",
        "/rules/",
        {
            "name": "boiler too hot",
            "device": device,
            "metric": "temperature",
            "operator": "gt",
            "threshold": 80,
            "severity": "warning",
            "message_template": "{device_name}: {metric} is {value} (> {threshold})",
            "channels": [channel.json()["id"]],
        },
        token=token,
    )
    assert rule.status == 201, rule.body
    ingest(stack, {"device_id": device, "timestamp": iso(datetime.now(UTC)), "metrics": {"temperature": 85}})

    events = stack.get(f"/events/?status=open&rule={rule.json()['id']}", token=token).json()["results"]
    assert [event["message"] for event in events] == ["TH-RULE: temperature is 85 (> 80)"]
    deadline, notifications = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        notifications = stack.get(f"/notifications/?event={events[0]['id']}", token=token).json()["results"]
        if notifications and notifications[0]["status"] == "sent":
            break
        time.sleep(0.5)
    assert [notification["status"] for notification in notifications] == ["sent"], notifications
    # The console email backend: the message itself is in the worker's log.
    worker_log = stack.logs("worker")
    assert "To: ops@example.com" in worker_log
    assert "TH-RULE: temperature is 85 (> 80)" in worker_log


def test_timescaledb_runs_the_tsl_policies(stack):
    status = stack.manage("timescale_status")
    assert "edition timescale" in status
    for aggregate in ("telemetry_1m", "telemetry_1h", "telemetry_1d"):
        assert f"{aggregate}: continuous aggregate, real-time" in status
        assert re.search(rf"policy_refresh_continuous_aggregate on {aggregate}, every .*, Scheduled", status)
        assert re.search(rf"policy_retention on {aggregate}, every .*, Scheduled", status)
    assert re.search(r"policy_retention on telemetry, every .*, Scheduled", status)
    assert re.search(r"policy_compression on telemetry, every .*, Scheduled", status)
    # Each policy's job runs in this build (the scheduler's own runs may not: STANDIN_JOB_FAILURE).
    jobs = re.findall(r"\[(\d+)\] [^:]+: policy_(?:refresh_continuous_aggregate|retention|compression) on", status)
    assert len(jobs) == 8, status
    # One -c each: a refresh may not run inside a transaction block.
    calls = [option for job in jobs for option in ("-c", f"CALL run_job({job})")]
    stack.exec("db", "psql", "-v", "ON_ERROR_STOP=1", "-U", "iothub", "-d", "iothub", *calls)


def test_no_secret_in_the_configuration_the_image_or_the_containers(stack):
    secrets = {name: stack.secret(name) for name in SECRETS}
    assert all(len(value) >= 32 for value in secrets.values()), "a secret was not generated"
    images = {stack.compose("images", "-q", service).stdout.strip() for service in ("web", "worker")}
    containers = [stack.container(service) for service in SERVICES if service != "init"]
    inspected = {
        "docker compose config": stack.compose("config").stdout,
        "docker history": "".join(
            subprocess.run(
                ["docker", "history", "--no-trunc", image], capture_output=True, text=True, check=True, timeout=60
            ).stdout
            for image in images
        ),
        "docker inspect": subprocess.run(
            ["docker", "inspect", *images, *containers], capture_output=True, text=True, check=True, timeout=60
        ).stdout,
    }
    for where, text in inspected.items():
        assert len(text) > 1000, where  # there was something to look at
        leaked = [name for name, value in secrets.items() if value in text]
        assert not leaked, f"{leaked} appear in {where}"


def test_app_containers_run_as_the_image_user(stack):
    for service in ("web", "worker"):
        assert stack.exec(service, "id", "-u").strip() == "10001", service
        # Every process of the container, the app server's and the worker's included.
        top = stack.compose("top", service).stdout
        processes = top.split("UID", 1)[1].splitlines()[1:]
        users = {line.split()[0] for line in processes if line.strip()}
        assert len(processes) >= 2, top
        assert users <= {"10001", "app"}, top


def test_restarting_web_under_ingest_loses_no_acknowledged_reading(stack, token, new_device):
    """Two clients post single readings in a bounded loop while web restarts: every reading answered 201 is
    stored. Those that got an error may or may not be (a device would send them again)."""
    device = new_device("TH-RESTART")
    base = datetime.now(UTC) - timedelta(minutes=30)
    acknowledged, failed, stop = [], [], threading.Event()
    deadline = time.monotonic() + 240

    def post(client, clients=2, limit=3000):
        for i in range(limit):
            if stop.is_set() or time.monotonic() > deadline:
                return
            seq = client + clients * i
            reading = {
                "device_id": device,
                "timestamp": iso(base + timedelta(milliseconds=seq)),
                "metrics": {"seq": seq},
            }
            try:
                response = stack.call("POST", "/telemetry/ingest/", reading)
                ok = response.status == 201 and response.json()["accepted"] == 1
            except OSError:
                ok = False
            (acknowledged if ok else failed).append(seq)
            if not ok:
                time.sleep(0.05)  # as a device would before its next try

    def wait_for(count):
        until = time.monotonic() + 60
        while len(acknowledged) < count and time.monotonic() < until:
            time.sleep(0.1)
        assert len(acknowledged) >= count, f"only {len(acknowledged)} readings acknowledged"

    clients = [threading.Thread(target=post, args=(client,), daemon=True) for client in (0, 1)]
    for client in clients:
        client.start()
    try:
        wait_for(50)
        started_before = stack.started_at("web")
        outage_start = datetime.now(UTC)
        stack.compose("restart", "web")
        stack.wait_until_serving()
        stack.outages.append((outage_start, datetime.now(UTC) + timedelta(seconds=2)))
        assert stack.started_at("web") != started_before, "web was not restarted"
        wait_for(len(acknowledged) + 50)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)

    stored = stored_readings(stack, token, device, "seq", base, base + timedelta(minutes=1))
    stored_seqs = {reading["metrics"]["seq"] for reading in stored}
    assert set(acknowledged) <= stored_seqs, sorted(set(acknowledged) - stored_seqs)[:20]
    assert stored_seqs <= set(acknowledged) | set(failed)
    print(f"{len(acknowledged)} acknowledged, {len(failed)} not, {len(stored_seqs)} stored")


def test_down_and_up_keeps_data_secrets_and_certificate(stack, token, new_device, admin_password):
    device = new_device("TH-DOWN-UP")
    moment = datetime.now(UTC).replace(microsecond=0)
    ingest(stack, {"device_id": device, "timestamp": iso(moment), "metrics": {"humidity": 41.5}})
    secrets = {name: stack.secret(name) for name in SECRETS}
    certificate = ssl.get_server_certificate(("127.0.0.1", stack.https_port))

    stack.down()
    assert stack.compose("ps", "-a", "-q").stdout.strip() == ""
    stack.up()

    assert {name: stack.secret(name) for name in SECRETS} == secrets
    assert ssl.get_server_certificate(("127.0.0.1", stack.https_port)) == certificate
    # The same admin password still logs in, and the old token still verifies (same signing key).
    login = stack.call("POST", "/auth/token/", {"username": ADMIN, "password": admin_password})
    assert login.status == 200, login.body
    assert stack.get("/me/", token=token).status == 200
    stored = stored_readings(stack, token, device, "humidity", moment, moment + timedelta(seconds=1))
    assert [reading["metrics"] for reading in stored] == [{"humidity": 41.5}]


def test_an_upgrade_rebuilds_migrates_and_serves(stack, token):
    """A second `up -d --build` after a change to the code: new image, new containers, migrations run."""
    (stack.directory / "iothub" / "upgrade_marker.txt").write_text("a harmless change to the build context\n")
    web_before = stack.container("web")
    devices_before = stack.get("/devices/", token=token).json()["count"]

    stack.up("--build")

    web_after = stack.container("web")
    assert web_after != web_before, "web was not recreated on the new image"
    assert stack.exec("web", "cat", "iothub/upgrade_marker.txt").startswith("a harmless change")
    started = subprocess.run(["docker", "logs", web_after], capture_output=True, text=True, timeout=60)
    assert "Running migrations:" in started.stdout + started.stderr
    assert stack.get("/devices/", token=token).json()["count"] == devices_before


def test_several_web_containers_start_at_once_and_the_proxy_spreads_over_them(stack):
    """`docker compose up -d --scale web=2` on a fresh database: the two web containers prepare it one at a time
    (manage.py prepare_database's advisory lock), so one migrates, the other finds nothing to do and neither fails
    and restarts; nginx forwards to both (each, alone, serves through the proxy). Last but one: it starts afresh."""
    stack.keep_logs()
    stack.compose("down", "-v", timeout=300)
    stack.tls = None  # init generates a new certificate
    stack.up("--scale", "web=2")

    webs = stack.container("web").split()
    assert len(webs) == 2
    logs = {web: subprocess.run(["docker", "logs", web], capture_output=True, text=True, timeout=60) for web in webs}
    logs = {web: result.stdout + result.stderr for web, result in logs.items()}
    # migrate says "Applying <migration>... OK" for each one it applies.
    assert sorted("Applying iothub.0001_initial" in log for log in logs.values()) == [False, True], logs
    assert sorted("No migrations to apply." in log for log in logs.values()) == [False, True], logs
    restarts = subprocess.run(
        ["docker", "inspect", "--format", "{{.RestartCount}}", *webs], capture_output=True, text=True, timeout=60
    )
    assert restarts.stdout.split() == ["0", "0"], restarts.stdout

    def health(web):
        status = ["docker", "inspect", "--format", "{{.State.Health.Status}}", web]
        return subprocess.run(status, capture_output=True, text=True, timeout=60).stdout.strip()

    for stopped in webs:
        outage_start = datetime.now(UTC)
        subprocess.run(["docker", "stop", stopped], capture_output=True, check=True, timeout=120)
        try:
            # nginx tries the stopped one, is refused and passes the request on: every call is answered.
            answers = [stack.get("/health/").status for _ in range(6)]
            tried = time.monotonic()  # nginx's last failure to reach the stopped one is before this
            assert answers == [200] * 6, f"with {stopped[:12]} stopped: {answers}"
        finally:
            subprocess.run(["docker", "start", stopped], capture_output=True, check=True, timeout=120)
            deadline = time.monotonic() + START_TIMEOUT
            while health(stopped) != "healthy":
                assert time.monotonic() < deadline, f"{stopped[:12]} did not become healthy again"
                time.sleep(1)
            # nginx keeps a server it failed to reach out of rotation for fail_timeout (10 s) after the failure,
            # healthy or not: stopping the other one sooner would leave it no server to pass requests on to (502s).
            time.sleep(max(0.0, tried + 11 - time.monotonic()))
            stack.outages.append((outage_start, datetime.now(UTC) + timedelta(seconds=2)))


def test_every_log_is_readable_and_free_of_errors(stack):
    """Last: the logs of the whole run, restarts and upgrade included."""
    signs_of_life = {
        "init": "entrypoint: secrets in /run/iothub-secrets and the certificate in /etc/iothub/certs are ready",
        "db": "database system is ready to accept connections",
        "web": "Started worker-",  # granian, once a worker has loaded the app
        "worker": "Listening on notifications_pending",
        "proxy": f"GET {API}/health/",
    }
    standin = "Debian" in stack.exec("db", "cat", "/etc/os-release")
    errors = []
    for service, sign in signs_of_life.items():
        current = stack.logs(service)
        assert sign in current, f"{service}: its log does not show {sign!r}"
        for log in [*stack.removed_logs.get(service, []), current]:
            errors += unexplained_errors(stack, service, log, standin)
    assert not errors, "\n".join(errors[:50])


def unexplained_errors(stack, service, log, standin):
    """The error lines of one container's log that none of the reasons above explains."""
    found, lines = [], log.splitlines()
    if service == "db":
        initialised = next((i for i, line in enumerate(lines) if INIT_DONE in line), -1)
        lines = lines[initialised + 1 :]
    for line in lines:
        if not ERROR_LINE.search(line):
            continue
        if service == "proxy" and UPSTREAM_DOWN.search(line) and during_an_outage(stack, line):
            continue
        if service == "db" and (ASKED_TO_STOP.search(line) or (standin and STANDIN_JOB_FAILURE.search(line))):
            continue
        found.append(line)
    return found


def during_an_outage(stack, line):
    # --timestamps: each line starts with the engine's RFC 3339 time.
    stamp = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", line)
    moment = datetime.fromisoformat(stamp.group(1)).replace(tzinfo=UTC)
    return any(start - timedelta(seconds=1) <= moment <= end for start, end in stack.outages)
