"""The project's proxy configuration (docker/nginx/templates/iothub.conf.template) run with nginx from apt.

The template is rendered the way the nginx image renders it and included from a minimal ``nginx.conf`` that runs
unprivileged in a directory of its own. Shared by tests/deploy/test_proxy_tls.py and the benchmarks.
"""

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docker" / "nginx" / "templates" / "iothub.conf.template"
NGINX = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))


def envsubst(text, variables):
    """What the nginx image does to templates: `envsubst "$defined_envs"` replaces $NAME and ${NAME} for defined
    variables only, so nginx's own $host and friends survive."""

    def replace(match):
        name = match.group(1) or match.group(2)
        return variables[name] if name in variables else match.group(0)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


def write_config(directory, variables, *, worker_processes="1", worker_connections=256):
    """Renders the template with ``variables`` (the NGINX_* ones) into ``directory`` beside an ``nginx.conf``
    that includes it, and returns the command that runs nginx in the foreground on it (append ``-t`` to check).

    The ``nginx.conf`` is the image's, reduced to what runs unprivileged in a temporary directory.
    """
    directory = Path(directory)
    (directory / "iothub.conf").write_text(envsubst(TEMPLATE.read_text(), variables))
    (directory / "nginx.conf").write_text(
        f"""daemon off;
worker_processes {worker_processes};
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections {worker_connections}; }}
http {{
    default_type application/octet-stream;
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/iothub.conf;
}}
"""
    )
    return [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(directory / "nginx.conf")]
