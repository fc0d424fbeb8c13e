"""The app servers a benchmark runs the project under, each started as the container stack starts it.

granian, the project's server, through ``python -m iothub.serve`` (iothub/serve.py: its settings); gunicorn, the
server before it, with the settings it had (bench/gunicorn.conf.py), as the baseline of the comparison. The same
number of worker processes and threads (= database connections) each; neither logs requests: nginx logs every one.
"""

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Server:
    name: str
    description: str

    def command(self, pid_file):
        if self.name == "gunicorn":
            return [VENV_BIN / "gunicorn", "-c", ROOT / "bench" / "gunicorn.conf.py", "iothub.wsgi", "--pid", pid_file]
        return [sys.executable, "-m", "iothub.serve"]

    def environment(self, port, pid_file):
        if self.name == "gunicorn":
            return {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_ACCESS_LOG": ""}
        return {"WEB_BIND": f"127.0.0.1:{port}", "WEB_ACCESS_LOG": "", "WEB_PID_FILE": str(pid_file)}

    # SIGINT: both servers' quick shutdown, without draining keep-alives.
    stop_signal = signal.SIGINT


SERVERS = {
    server.name: server
    for server in (
        Server("granian", "granian (WSGI; iothub/serve.py)"),
        Server("gunicorn", "gunicorn (bench/gunicorn.conf.py: the server before granian)"),
    )
}
DEFAULT = "granian"  # the project's server: every measurement but the comparison runs on it
