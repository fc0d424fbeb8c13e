"""Gunicorn settings (loaded automatically from the working directory), shared by the container and `make run`.

Each worker thread holds at most one persistent database connection: connections = workers x threads.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Off unless set ("-" is stdout): in the container stack nginx logs every request already, and gunicorn's own line
# cost ~15 % of a worker's CPU per single-reading ingest (py-spy, bench/). `make run`, without nginx, sets a file.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# TLS when gunicorn faces clients itself (`make run`); behind the proxy these stay unset.
certfile = os.environ.get("GUNICORN_CERTFILE") or None
keyfile = os.environ.get("GUNICORN_KEYFILE") or None
# No runtime control socket (gunicornc): nothing uses it, the container's user may not write its default place
# ($HOME/.gunicorn, /app being root's) and every gunicorn of one user would share that path.
control_socket_disable = True
