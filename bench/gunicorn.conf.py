"""gunicorn's settings as the project ran them before granian (iothub/serve.py): the baseline `make bench`
compares granian with (bench/servers.py). Nothing else runs gunicorn.

Each worker thread holds at most one persistent database connection: connections = workers x threads.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# The same variables as iothub/serve.py's: both servers run with as many processes and threads.
threads = int(os.environ.get("WEB_THREADS", "2"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Off unless set ("-" is stdout): nginx logs every request already, and gunicorn's own line cost ~15 % of a
# worker's CPU per single-reading ingest (py-spy, bench/).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# No runtime control socket (gunicornc): nothing uses it, the container's user may not write its default place
# ($HOME/.gunicorn, /app being root's) and every gunicorn of one user would share that path.
control_socket_disable = True
