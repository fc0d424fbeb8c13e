"""`make run` as a developer meets it: the stack without Docker, started by scripts/dev/run.sh in a state folder
of its own (IOTHUB_STATE_DIR) on free loopback ports, stopped by `make reset`'s script, which deletes that state."""

import os
import re
import ssl
import subprocess
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
    }
    env.pop("DATABASE_URL", None)
    try:
        started = subprocess.run(
            ["bash", "scripts/dev/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield {"state": state, "url": f"https://localhost:{https_port}", "output": started.stdout + started.stderr}
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
