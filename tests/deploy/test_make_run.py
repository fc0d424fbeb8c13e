"""`make run` as a developer meets it: the stack without Docker, started by scripts/dev/run.sh in a state folder
of its own (IOTHUB_STATE_DIR) on free loopback ports, stopped by `make reset`'s script, which deletes that state.
The README's curl session runs against it, twice in a row."""

import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.stack import ROOT, free_port


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("make run starts PostgreSQL as the postgres user: needs root here")
    # Under /var/tmp: the postgres user must reach the cluster's folder (pytest's tmp may be mode 700).
    state = Path("/var/tmp") / f"iothub-make-run-test-{os.getpid()}"
    https_port = free_port()
    env = {
        **os.environ,
        "IOTHUB_STATE_DIR": str(state),
        "IOTHUB_PG_PORT": str(free_port()),
        "IOTHUB_HTTPS_PORT": str(https_port),
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_PASSWORD": "change-me-now-42",
        "NO_DATA_EVALUATION_SECONDS": "2",  # the README session waits for its no-data rule's event
    }
    env.pop("DATABASE_URL", None)
    try:
        started = subprocess.run(
            ["bash", "scripts/dev/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield {
            "state": state,
            "url": f"https://localhost:{https_port}",
            "output": started.stdout + started.stderr,
            "env": env,
        }
    finally:
        subprocess.run(["bash", "scripts/dev/reset.sh"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert not state.exists()


def get(stack, path):
    context = ssl.create_default_context(cafile=stack["state"] / "tls" / "cert.pem")
    try:
        with urllib.request.urlopen(stack["url"] + path, context=context, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_make_run_serves_https_and_says_where(make_run):
    status, body = get(make_run, "/api/v1/health/")
    assert status == 200, body
    assert make_run["url"] + "/" in make_run["output"]
    assert "TimescaleDB edition:" in make_run["output"]


def test_django_logs_of_the_web_process_land_in_the_logs_folder(make_run):
    # The app server used to run with --daemon, whose stderr is /dev/null: Django's log lines (the stack trace
    # behind every 500) went nowhere.
    status, _ = get(make_run, "/api/v1/no-such-endpoint-for-the-log/")
    assert status == 404
    log = (make_run["state"] / "logs" / "web.log").read_text()
    assert "Not Found: /api/v1/no-such-endpoint-for-the-log/" in log


def test_the_web_process_logs_every_request_without_a_proxy(make_run):
    # No nginx in front of `make run`: the app server's own access log is the record of requests, with the pid of
    # the worker that served each one.
    status, _ = get(make_run, "/api/v1/health/")
    assert status == 200
    lines = (make_run["state"] / "logs" / "access.log").read_text().splitlines()
    line = next(line for line in lines if "/api/v1/health/" in line)
    # HTTP/2 when the client offers it over TLS (granian negotiates it), else HTTP/1.1; the path without the query.
    assert re.match(r'<\d+> 127\.0\.0\.1 "GET /api/v1/health/ HTTP/(1\.1|2)" 200 ', line), line


def test_every_address_make_run_prints_works(make_run):
    """Followed as a browser would (the site root and Admin redirect): each answers 200 over the printed
    certificate."""
    addresses = set(re.findall(r"https://localhost:[0-9]+/\S*", make_run["output"]))
    assert {make_run["url"] + path for path in ("/", "/api/v1/docs/", "/admin/")} <= addresses
    for address in addresses:
        status, body = get(make_run, address.removeprefix(make_run["url"]))
        assert status == 200, (address, body[:300])
    certificate = re.search(r"Certificate\s+(\S+)", make_run["output"])[1]
    assert Path(certificate) == make_run["state"] / "tls" / "cert.pem"


# The README's session: every shell block of its section, in order, so that what is added there runs here too.
README_SESSION = "## A first session with curl"


def readme_session():
    readme = (ROOT / "README.md").read_text()
    section = readme.split(README_SESSION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert blocks, "no shell block in the README's session"
    return "\n".join(blocks)


def _documents(output):
    """The JSON documents the session printed, one per line (a curlrc ends every answer with a newline)."""
    documents = []
    for line in output.splitlines():
        if line.startswith(("{", "[")):
            documents.append(json.loads(line))
    return documents


def _run_session(make_run, home):
    env = {
        **make_run["env"],
        "HOME": str(home),
        "API": make_run["url"] + "/api/v1",
        "CURL_CA_BUNDLE": str(make_run["state"] / "tls" / "cert.pem"),
    }
    script = "set -euo pipefail\n" + readme_session()
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _api(make_run, path, token):
    context = ssl.create_default_context(cafile=make_run["state"] / "tls" / "cert.pem")
    request = urllib.request.Request(make_run["url"] + "/api/v1/" + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)


def _token(make_run):
    context = ssl.create_default_context(cafile=make_run["state"] / "tls" / "cert.pem")
    body = json.dumps({"username": "admin", "password": "change-me-now-42"}).encode()
    request = urllib.request.Request(
        make_run["url"] + "/api/v1/auth/token/", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)["access"]


def test_the_readme_session_runs_twice_in_a_row(make_run, tmp_path):
    """On the empty database make run started, then again on the one the first run filled: every step answers
    without a problem (the session stops at the first refused call), and each run works on the objects it made."""
    (tmp_path / ".curlrc").write_text('write-out = "\\n"\n')
    for run in (1, 2):
        if run == 2:
            time.sleep(1.1)  # a new RUN stamp: the names of the second run differ from the first's
        finished = _run_session(make_run, tmp_path)
        assert finished.returncode == 0, f"run {run}:\n{finished.stdout}\n{finished.stderr}"
        documents = _documents(finished.stdout)
        problems = [document for document in documents if isinstance(document, dict) and "title" in document]
        # Only the two errors the session shows on purpose, at its end.
        assert [problem["status"] for problem in problems] == [401, 400], finished.stdout
        assert documents[-2:] == problems
        assert problems[1]["errors"][0]["parameter"] == "location"

        by_shape = {
            "me": [d for d in documents if isinstance(d, dict) and d.get("username") == "admin"],
            "ingest": [d for d in documents if isinstance(d, dict) and "accepted" in d],
            "aggregate": [d for d in documents if isinstance(d, dict) and "complete_until" in d],
        }
        assert len(by_shape["me"]) == 1
        # The first reading, the sensor merged into it, the keyed one, the rule's two, the no-data rule's end.
        assert [(d["accepted"], d["merged"]) for d in by_shape["ingest"]] == [
            (1, 0),
            (0, 1),
            (1, 0),
            (1, 0),
            (1, 0),
            (1, 0),
        ]
        assert by_shape["aggregate"][0]["results"][0]["metric"] == "temperature"
        assert "timestamp,door_open,humidity,temperature" in finished.stdout  # the CSV export

        token = _token(make_run)
        rules = _api(make_run, "rules/?ordering=-created_at", token)["results"]
        silent, rule = rules[0], rules[1]
        assert rule["name"].startswith("boiler too hot ")
        assert (silent["kind"], silent["name"].split()[:2]) == ("no_data", ["boiler", "silent"])
        (silence,) = _api(make_run, f"events/?rule={silent['id']}", token)["results"]
        assert silence["status"] == "resolved"
        assert silence["resolved_note"].startswith("Resolved automatically")
        devices = _api(make_run, "devices/?ordering=-created_at", token)["results"]
        # The rule and the device use this run's type and channel, not someone else's.
        assert rule["device_type"] == devices[0]["device_type"]
        channels = _api(make_run, "notification-channels/?ordering=-created_at", token)["results"]
        assert rule["channels"] == [channels[0]["id"]]
        (event,) = _api(make_run, f"events/?rule={rule['id']}", token)["results"]
        assert (event["status"], event["occurrence_count"]) == ("resolved", 2)
        assert (event["acknowledged_note"], event["resolved_note"]) == ("on it", "valve replaced")
        assert event["device"] == devices[0]["id"]
        deadline = time.monotonic() + 20
        while _api(make_run, f"notifications/?event={event['id']}", token)["results"][0]["status"] != "sent":
            assert time.monotonic() < deadline, "the worker did not deliver the session's notification"
            time.sleep(0.5)
    assert len(rules) == 4  # two per run
