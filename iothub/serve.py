"""The web server: granian serving ``iothub.wsgi`` (WSGI) — `python -m iothub.serve`.

Used by the container (docker/entrypoint.sh), `make run`, the benchmarks and the tests, with its settings from the
environment. granian's HTTP core is compiled (Rust): behind the same nginx, the same app served the trivial endpoint
≈ 1.5-1.8x and single readings ≈ 1.6x as fast as under gunicorn, the app server's own CPU per request a third lower
(docs/performance.md, "The app server: granian replaces gunicorn").

Each worker thread holds at most one persistent database connection: connections = workers x threads.
"""

import os
import sys
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces, SSLProtocols
from granian.log import LOGGING_CONFIG, LogLevels

# The access log's line: the worker's pid first (which process served it), then granian's own fields.
ACCESS_LOG_FORMAT = "<%(process)d> %(message)s"
ACCESS_LOG_FIELDS = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f ms'


def options(environ=os.environ):
    """granian's keyword arguments from the environment:

    WEB_BIND             host:port to listen on (default 0.0.0.0:8000), or unix:/path for a Unix socket
    WEB_CONCURRENCY      worker processes (default 4)
    WEB_THREADS          threads per worker that run the app, each with its database connection (default 2)
    WEB_ACCESS_LOG       unset or empty: no access log (behind nginx, which logs every request); "-": standard
                         output; else a file
    WEB_CERTFILE, WEB_KEYFILE   TLS when the server faces clients itself (`make run`); unset behind the proxy
    WEB_PID_FILE         where to write the main process's pid
    """
    bind = environ.get("WEB_BIND", "0.0.0.0:8000")
    uds = Path(bind.removeprefix("unix:")) if bind.startswith("unix:") else None
    host, _, port = ("127.0.0.1", "", "0") if uds else bind.rpartition(":")
    access_log = environ.get("WEB_ACCESS_LOG") or None
    certificate = environ.get("WEB_CERTFILE") or None
    pid_file = environ.get("WEB_PID_FILE") or None
    return {
        "target": "iothub.wsgi:application",
        "interface": Interfaces.WSGI,
        "address": host,
        "port": int(port),
        "uds": uds,
        "workers": int(environ.get("WEB_CONCURRENCY", "4")),
        "blocking_threads": int(environ.get("WEB_THREADS", "2")),
        # Plain HTTP/1.1 from nginx; no websockets in this app.
        "websockets": False,
        # A worker that dies (killed, out of memory) is replaced; granian stops instead when the same worker dies
        # again within 5.5 s of being replaced (a crash loop), and the container's restart policy takes over.
        "respawn_failed_workers": True,
        # A reload (SIGHUP) or a stop waits this long for requests in flight, as gunicorn's graceful_timeout did.
        "workers_kill_timeout": 20,
        "log_access": access_log is not None,
        "log_access_format": ACCESS_LOG_FIELDS,
        "log_dictconfig": _logging(access_log),
        "log_level": LogLevels(environ.get("WEB_LOG_LEVEL", "info").lower()),
        "ssl_cert": Path(certificate) if certificate else None,
        "ssl_key": Path(environ["WEB_KEYFILE"]) if certificate else None,
        "ssl_protocol_min": SSLProtocols.tls12,
        "pid_file": Path(pid_file) if pid_file else None,
    }


def _logging(access_log):
    """granian's logging configuration, its access lines to ``access_log`` ("-": standard output)."""
    config = {
        **LOGGING_CONFIG,
        "formatters": {**LOGGING_CONFIG["formatters"]},
        "handlers": {**LOGGING_CONFIG["handlers"]},
    }
    config["formatters"]["access"] = {"()": "logging.Formatter", "fmt": ACCESS_LOG_FORMAT}
    if access_log and access_log != "-":
        config["handlers"]["access"] = {"class": "logging.FileHandler", "filename": access_log, "formatter": "access"}
    return config


def main():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # iothub.wsgi from any working directory
    Granian(**options()).serve()


if __name__ == "__main__":
    main()
