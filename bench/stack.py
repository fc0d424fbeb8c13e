"""The stack a benchmark runs against, started and stopped by the run itself.

A private PostgreSQL 15 + TimescaleDB cluster (scripts/dev/lib.sh's helpers, on a free port, under the state
directory, never the `make run` one), the migrated app database, the app servers of bench/servers.py (granian as the
project runs it, and gunicorn as the baseline of the comparison), and in front of each an nginx from apt with the
project's proxy configuration over HTTPS on loopback (ingest rate limit off). Everything
is stopped and the cluster deleted on exit, also on failure, Ctrl-C or SIGTERM; a run killed outright is cleaned
up by the next one.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench import servers
from bench.nginx import NGINX, ROOT, write_config

LIB = ROOT / "scripts" / "dev" / "lib.sh"
APP_ROLE = APP_DB = "iothub"


_STARTED = time.monotonic()


def log(message):
    print(f"==> [{time.monotonic() - _STARTED:5.1f} s] {message}", file=sys.stderr, flush=True)


def lib(function, *args, capture=False):
    """Calls a scripts/dev/lib.sh function (cluster_init, ...) in bash."""
    return lib_script('"$@"', function, *args, capture=capture)


def lib_script(script, *args, capture=False):
    """Runs bash ``script`` with scripts/dev/lib.sh sourced and ``args`` as $1, $2, ..."""
    result = subprocess.run(
        ["bash", "-c", f'source "{LIB}" && {script}', "lib.sh", *map(str, args)],
        text=True,
        capture_output=capture,
        check=True,
        timeout=300,
    )
    return result.stdout.strip() if capture else None


def state_dir():
    return Path(lib("state_dir", capture=True))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(process, timeout=20, sig=signal.SIGTERM):
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _stop_pid_file(path):
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)


def clean_leftovers(base):
    """Stops and removes what a run killed outright (SIGKILL, power loss) left behind: its run directory names the
    process that owned it."""
    for directory in base.glob("bench-run-*"):
        try:
            owner = int(directory.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid_alive(owner):
            continue
        log(f"cleaning up {directory} (its run {owner} is gone)")
        for pid_file in [*directory.glob("nginx-*/nginx.pid"), *directory.glob("*.pid")]:
            _stop_pid_file(pid_file)
        if (directory / "pg" / "data" / "PG_VERSION").exists():
            lib("cluster_stop", directory / "pg")
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class RunningServer:
    """An app server of the run and the nginx in front of it (``url``: HTTPS through that nginx)."""

    name: str
    server: servers.Server
    port: int
    process: subprocess.Popen
    nginx: subprocess.Popen
    url: str


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)


class Stack:
    """``with Stack(durable=...) as stack:`` a running stack; ``stack.url`` is the HTTPS base URL."""

    def __init__(self, *, durable=True, server_names=(servers.DEFAULT,)):
        self.durable = durable
        self.server_names = list(server_names)
        self._processes = []  # (process, its stop signal), in start order
        self.cluster_started = False

    # Lifecycle ---------------------------------------------------------------------------------------------------

    def __enter__(self):
        signal.signal(signal.SIGTERM, _raise_system_exit)
        base = state_dir()
        clean_leftovers(base)
        self.dir = base / f"bench-run-{os.getpid()}"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "logs").mkdir(parents=True)
        os.chmod(self.dir, 0o755)  # the cluster directory inside must be reachable by the postgres user
        try:
            self._start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc_info):
        log("stopping nginx, the app servers and PostgreSQL")
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up yet: nothing to close then
            pass
        for process, stop_signal in reversed(self._processes):
            stop_process(process, sig=stop_signal)
        if self.cluster_started:
            # Immediate: the cluster is deleted next (or kept only for its log).
            lib_script('as_pg "$PG_BIN/pg_ctl" -D "$1" -m immediate -w -t 60 stop >/dev/null', self.cluster / "data")
        failed = exc_info[0] is not None
        if failed:
            shutil.rmtree(self.cluster, ignore_errors=True)
            log(f"logs kept in {self.dir / 'logs'}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return False

    def _start(self):
        self.pg_port = free_port()
        self.cluster = self.dir / "pg"
        log(f"PostgreSQL + TimescaleDB on 127.0.0.1:{self.pg_port} ({self.cluster})")
        # `make run`'s settings (durable commits) unless the run only checks that the harness works.
        extra = "" if self.durable else "fsync = off\nfull_page_writes = off\nsynchronous_commit = off"
        # EDITION=timescale|apache as for make test; by default the fullest edition the library serves.
        self.edition = lib("chosen_edition", capture=True)
        extra += "\n" + lib("edition_conf", self.edition, capture=True)
        log(f"TimescaleDB edition: {self.edition}")
        lib("cluster_init", self.cluster, self.pg_port, extra)
        lib("cluster_start", self.cluster)
        self.cluster_started = True
        password = secrets.token_urlsafe(24)
        lib("ensure_app_database", self.cluster, self.pg_port, password)
        self.database_url = f"postgres://{APP_ROLE}:{quote(password, safe='')}@127.0.0.1:{self.pg_port}/{APP_DB}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DJANGO_DEBUG": "0",
            "DJANGO_STATIC_ROOT": str(self.dir / "static"),
            # Far above what the benchmarks send per device: each request is still counted, never refused.
            "INGEST_DEVICE_RATE": "1000000/s",
        }
        log("migrations")
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("apply_timescale_policies")
        self._certificate()
        self._start_servers()
        log("waiting for the health endpoint through nginx")
        self.wait_healthy()

    def manage(self, *args):
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, timeout=600, stdout=sys.stderr
        )

    def _certificate(self):
        self.cert_dir = self.dir / "tls"
        self.cert_dir.mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", self.cert_dir / "tls.key", "-out", self.cert_dir / "tls.crt"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def _start_servers(self):
        """Every app server of the run (bench.servers), each behind an nginx of its own on the same configuration;
        the first is the one every measurement but the comparison uses."""
        self.servers = {}
        for name in self.server_names:
            server = servers.SERVERS[name]
            port, pid_file = free_port(), self.dir / f"{name}.pid"
            log(f"{server.description} on 127.0.0.1:{port}")
            with (self.dir / "logs" / f"{name}.log").open("w") as output:
                process = subprocess.Popen(
                    server.command(pid_file),
                    cwd=ROOT,
                    env={**self.env, **server.environment(port, pid_file)},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches this process only, which stops the server in order
                )
            self._processes.append((process, server.stop_signal))
            self._wait(lambda port=port: port_open(port), process, f"{name}.log")
            nginx, url = self._start_nginx(name, port)
            self.servers[name] = RunningServer(name, server, port, process, nginx, url)
        self.primary = self.servers[self.server_names[0]]
        self.url = self.primary.url

    def start_nginx_variant(self, name, edit):
        """Another nginx in front of the first app server, on the project's configuration changed by ``edit`` (a
        function of the rendered text): ``(process, HTTPS base URL)``, stopped with the stack."""
        return self._start_nginx(name, self.primary.port, edit=edit)

    def _start_nginx(self, name, upstream_port, edit=None):
        if NGINX is None:
            raise SystemExit("nginx is not installed (Debian: apt-get install nginx-light)")
        http_port, https_port = free_port(), free_port()
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower())  # a path nginx's configuration can hold
        directory = self.dir / f"nginx-{slug}"
        directory.mkdir()
        log(f"nginx (docker/nginx/templates/iothub.conf.template) on https://127.0.0.1:{https_port} for {name}")
        variables = {
            "NGINX_HTTP_PORT": f"127.0.0.1:{http_port}",
            "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
            "NGINX_HTTPS_PORT_SUFFIX": f":{https_port}",
            "NGINX_UPSTREAM": f"127.0.0.1:{upstream_port}",
            "NGINX_INGEST_RATE": "1000r/s",
            "NGINX_INGEST_BURST": "2000",
            "NGINX_INGEST_RATE_LIMIT": "off",
            "NGINX_CERT_DIR": str(self.cert_dir),
        }
        # The image's nginx.conf: one worker per core, 1,024 connections each.
        command = write_config(directory, variables, worker_processes="auto", worker_connections=1024)
        if edit:
            rendered = directory / "iothub.conf"
            text = rendered.read_text()
            if edit(text) == text:
                raise RuntimeError(f"the nginx variant {name!r} changes nothing: the template changed?")
            rendered.write_text(edit(text))
        subprocess.run([*command, "-t"], check=True, capture_output=True, timeout=30)
        nginx = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._processes.append((nginx, signal.SIGTERM))  # SIGTERM: nginx's fast shutdown
        self._wait(lambda: port_open(https_port), nginx, f"../nginx-{slug}/error.log")
        return nginx, f"https://127.0.0.1:{https_port}"

    def _wait(self, ready, process, log_name, timeout=60):
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "logs" / log_name).read_text()[-3000:]
                raise RuntimeError(f"{process.args[0]} did not start:\n{tail}")
            time.sleep(0.1)

    # Use ---------------------------------------------------------------------------------------------------------

    def tls_context(self):
        return ssl.create_default_context(cafile=str(self.cert_dir / "tls.crt"))

    def http(self, method, path, *, body=None, headers=None, timeout=30):
        """``(status, body bytes)`` of one request through nginx over HTTPS (setup and checks, not load)."""
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, context=self.tls_context(), timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = self.http("GET", "/api/v1/health/", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the health endpoint did not answer through nginx")
            time.sleep(0.2)

    def postmaster_pid(self):
        return int((self.cluster / "data" / "postmaster.pid").read_text().split()[0])

    def pg_psql(self, sql):
        """One statement as the cluster's superuser (versions and settings the app role may not read)."""
        return lib("cluster_psql", self.cluster, self.pg_port, "-c", sql, capture=True)
