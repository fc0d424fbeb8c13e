"""Where an app server worker's time goes while it serves ingest: py-spy samples of every worker, summarised.

py-spy records with ``--idle`` so time spent waiting for PostgreSQL counts; only samples taken while a worker
thread handles a request are kept (the server's own idle threads are dropped). Each sample is put in the first
category (in CATEGORIES order) that one of its frames matches, so a query's wait counts where it was issued.
"""

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")

# (category, predicate on a frame "function (path:line)"): a sample goes to the first category any of its frames
# matches.
CATEGORIES = [
    # CONN_HEALTH_CHECKS: Django's SELECT 1 before the first query of each request on a reused connection.
    ("database: connection health check (is_usable)", lambda f: "is_usable (" in f),
    ("database: ingest INSERT (telemetry.ingest.statement)", lambda f: "ingest/statement.py" in f),
    (
        "database: device lookup (telemetry.ingest.services)",
        lambda f: "_DeviceLookup" in f or "__call__ (telemetry/ingest/services.py" in f,
    ),
    ("database: other queries", lambda f: "django/db/" in f),
    ("validation (telemetry/ingest/validation.py)", lambda f: "telemetry/ingest/validation.py" in f),
    ("reading the body (wsgi.input)", lambda f: f.startswith("read_body (") or f.startswith("read (")),
    ("JSON parsing of the body", lambda f: "parsers.py" in f or "json" in f.split(" (")[0]),
    ("the INSERT's parameter (first of each reading, orjson.dumps)", lambda f: f.startswith("reading_ingest (")),
    ("response rendering (DRF renderer)", lambda f: "renderers.py" in f),
    ("access log", lambda f: "glogging.py" in f or "logging/" in f),
    ("DRF request/view machinery", lambda f: "rest_framework/" in f),
    ("Django middleware and handlers", lambda f: "django/" in f),
    ("gunicorn HTTP parsing and socket I/O", lambda f: "gunicorn/" in f),
    ("granian's WSGI glue (environ, response)", lambda f: "granian/" in f),
]
# A frame of each server's request handling: gunicorn's worker method, granian's WSGI callback.
REQUEST = ("handle_request (", "_runner (")


def record(pid, seconds, output, rate=250):
    """Starts py-spy on the app server's main process and its workers for ``seconds``; returns the process (wait
    on it)."""
    if PY_SPY is None:
        raise SystemExit("py-spy is not installed (it is pinned in requirements-dev.txt)")
    return subprocess.Popen(
        [PY_SPY, "record", "--pid", str(pid), "--subprocesses", "--idle", "--nonblocking", "--rate", str(rate),
         "--duration", str(seconds), "--format", "raw", "--nolineno", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _frames(line):
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def summarise(raw_path, top=12):
    """``{"samples", "categories": [(name, percent)], "top_self": [(frame, percent)]}`` of request samples."""
    categories, leaves = Counter(), Counter()
    total = 0
    for line in Path(raw_path).read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        if not any(marker in frame for frame in frames for marker in REQUEST):
            continue
        total += count
        leaves[_short(frames[-1])] += count
        name = next((name for name, matches in CATEGORIES if any(matches(frame) for frame in frames)), "other")
        categories[name] += count
    if not total:
        return {"samples": 0, "categories": [], "top_self": []}

    def percent(count):
        return round(100 * count / total, 1)

    return {
        "samples": total,
        "categories": [(name, percent(count)) for name, count in categories.most_common()],
        "top_self": [(frame, percent(count)) for frame, count in leaves.most_common(top)],
    }


def _short(frame):
    """``function (site-packages/pkg/mod.py:12)`` with the path from the package on."""
    function, _, where = frame.partition(" (")
    for marker in ("site-packages/", "/work/", "/lib/python3.13/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{function} ({where}"
