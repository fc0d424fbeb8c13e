"""The container stack, checked without a Docker engine: docker-compose.yml, the Dockerfile, and the entrypoint's
`init` and secret loading run for real against temporary directories."""

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
TEMPLATE = ROOT / "docker" / "nginx" / "templates" / "iothub.conf.template"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SECRET_FILES = ("postgres_password", "django_secret_key", "jwt_signing_key")


def _environment(service):
    environment = SERVICES[service].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return environment


def _depends_on(service):
    return {name: spec["condition"] for name, spec in SERVICES[service].get("depends_on", {}).items()}


def test_services():
    assert set(SERVICES) == {"init", "db", "web", "worker", "proxy"}


def test_only_the_proxy_publishes_ports_and_only_443_and_80():
    published = {name: service["ports"] for name, service in SERVICES.items() if service.get("ports")}
    assert list(published) == ["proxy"]
    container_ports = sorted(int(str(port).rsplit(":", 1)[1]) for port in published["proxy"])
    assert container_ports == [80, 443]
    # The host side defaults to the same ports.
    assert sorted(published["proxy"]) == ["${HTTPS_PORT:-443}:443", "${HTTP_PORT:-80}:80"]


def test_database_is_the_pinned_timescaledb_image_and_not_published():
    db = SERVICES["db"]
    assert db["image"] == "timescale/timescaledb:2.19.3-pg15"
    assert "ports" not in db
    assert _environment("db")["POSTGRES_PASSWORD_FILE"] == "/run/iothub-secrets/postgres_password"


def test_database_and_web_have_healthchecks():
    assert "pg_isready" in str(SERVICES["db"]["healthcheck"]["test"])
    assert "http://localhost:8000/api/v1/health/" in str(SERVICES["web"]["healthcheck"]["test"])


def test_start_order():
    assert _depends_on("db") == {"init": "service_completed_successfully"}
    assert _depends_on("web") == {"db": "service_healthy"}
    assert _depends_on("worker") == {"db": "service_healthy"}
    assert _depends_on("proxy") == {"web": "service_healthy"}


def test_app_services_share_the_image_and_run_their_subcommand():
    for service, command in [("init", "init"), ("web", "web"), ("worker", "worker")]:
        assert SERVICES[service]["build"] == "."
        assert SERVICES[service]["command"] == command
    assert SERVICES["init"]["user"] == "root"
    assert SERVICES["init"]["restart"] == "no"


# Every setting and the app server's options (iothub/serve.py), as JSON.
SNAPSHOT = """
import json
import django
from django.conf import settings
from iothub import serve
django.setup()
values = {name: getattr(settings, name) for name in dir(settings) if name.isupper()}
values["app server"] = serve.options()
print(json.dumps(values, default=str, sort_keys=True))
"""


def _snapshot(environment):
    result = subprocess.run(
        [sys.executable, "-c", SNAPSHOT], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif((ROOT / ".env").exists(), reason="a local .env would change the defaults being compared")
def test_compose_passes_the_application_defaults():
    """What compose hands the app when no variable is set must behave like the variables being unset: its
    ${NAME:-default}s are copies of the defaults in settings.py and iothub/serve.py."""
    required = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "iothub.settings",
        "DJANGO_SECRET_KEY": "k" * 50,
        "DATABASE_URL": "postgres://iothub@localhost/iothub",
        "DJANGO_ALLOWED_HOSTS": "localhost",
    }
    passed = {}
    for name, value in _environment("web").items():
        match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
        passed[name] = match.group(1) if match else value
    passed = {name: value for name, value in passed.items() if name not in required}
    assert {
        "DJANGO_DEBUG",
        "DB_CONN_MAX_AGE",
        "TELEMETRY_RETENTION_DAYS",
        "WEB_CONCURRENCY",
        "WEB_THREADS",
    } <= passed.keys()
    assert _snapshot({**required, **passed}) == _snapshot(required)


def _settings(node, path=()):
    """Every (path, key, value) setting in the file, from mappings and from KEY=VALUE list items."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                yield from _settings(value, (*path, key))
            else:
                yield path, str(key), "" if value is None else str(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item):
                key, value = item.split("=", 1)
                yield path, key, value
            else:
                yield from _settings(item, path)


def test_no_literal_secret_in_the_compose_file():
    checked = []
    for path, key, value in _settings(COMPOSE):
        if not value or not re.search(r"PASSWORD|SECRET|KEY", key, re.IGNORECASE):
            continue
        checked.append(key)
        if key.endswith("_FILE"):
            assert value.startswith("/"), (path, key, value)
        else:
            # Passed through from the environment, with no default value.
            assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?-)?\}", value), (path, key, value)
    assert {"DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE"} <= set(checked)


def test_every_template_variable_is_set_for_the_proxy():
    # The image's envsubst leaves an undefined ${NAME} in the file as it is: nginx would refuse it.
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", TEMPLATE.read_text()))
    defined = {name for name in _environment("proxy") if name.startswith("NGINX_")}
    assert used == defined


def test_every_base_image_is_pinned_to_an_exact_version():
    # Reproducible images: a tag like nginx:1.27-alpine moves with every patch release.
    images = [service["image"] for service in SERVICES.values() if "image" in service]
    images += [line.split()[1] for line in _dockerfile_instructions() if line.startswith("FROM ")]
    assert len(images) == 3, images
    for image in images:
        assert re.search(r":(\d+\.\d+\.\d+)(-[a-z0-9.]+)?$", image), f"{image} is not pinned to an exact version"


def test_proxy_renders_the_template_and_mounts_the_certificates_read_only():
    volumes = SERVICES["proxy"]["volumes"]
    assert "./docker/nginx/templates:/etc/nginx/templates:ro" in volumes
    assert "${TLS_CERT_DIR:-certs}:/etc/nginx/certs:ro" in volumes
    assert SERVICES["proxy"]["image"].startswith("nginx:1.27")
    assert set(COMPOSE["volumes"]) == {"pgdata", "secrets", "certs"}


def _dockerfile_instructions():
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile():
    instructions = _dockerfile_instructions()
    assert instructions[0] == "FROM python:3.13.7-slim"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "the image must not run as root"
    assert users[-1] not in {"root", "0"}
    assert any(re.search(r"pip install --no-cache-dir -r requirements\.txt", line) for line in instructions)
    assert any("collectstatic --noinput" in line for line in instructions if line.startswith("RUN "))
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in instructions
    assert 'CMD ["web"]' in instructions


def test_dockerfile_collectstatic_runs_on_its_throwaway_settings_alone(tmp_path):
    """The build step gets no .env and no database: the values on its RUN line must be enough."""
    (line,) = [line for line in _dockerfile_instructions() if "collectstatic" in line]
    words = shlex.split(line.removeprefix("RUN "))
    assignments = dict(word.split("=", 1) for word in words if re.fullmatch(r"[A-Z_]+=.*", word))
    command = [word for word in words if word not in {f"{k}={v}" for k, v in assignments.items()}]
    assert command == ["python", "manage.py", "collectstatic", "--noinput"]
    environment = {
        "PATH": os.environ["PATH"],
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        **assignments,
    }
    result = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").is_file()


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".local", ".env", "staticfiles", "**/__pycache__"} <= ignored


def test_entrypoint_is_executable_posix_sh():
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    result = subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _run_entrypoint(tmp_path, *args, **environment):
    """The entrypoint with a clean environment: the test run's own DATABASE_URL and keys must not leak in."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "IOTHUB_SECRETS_DIR": str(tmp_path / "secrets"),
        "IOTHUB_CERTS_DIR": str(tmp_path / "certs"),
        **environment,
    }
    return subprocess.run(
        [str(ENTRYPOINT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _init(tmp_path, **environment):
    result = _run_entrypoint(tmp_path, "init", **environment)
    assert result.returncode == 0, result.stderr
    return {name: (tmp_path / "secrets" / name).read_text() for name in SECRET_FILES}


def test_init_generates_random_secrets_and_keeps_them(tmp_path):
    first = _init(tmp_path / "a")
    for name, value in first.items():
        assert re.fullmatch(r"[0-9a-f]{64}", value), name
        assert stat.S_IMODE((tmp_path / "a" / "secrets" / name).stat().st_mode) == 0o640
    assert len(set(first.values())) == 3
    assert stat.S_IMODE((tmp_path / "a" / "secrets").stat().st_mode) == 0o750

    elsewhere = _init(tmp_path / "b")
    assert set(elsewhere.values()).isdisjoint(first.values())

    certificate = (tmp_path / "a" / "certs" / "tls.crt").read_bytes()
    assert _init(tmp_path / "a") == first
    assert (tmp_path / "a" / "certs" / "tls.crt").read_bytes() == certificate
    assert not list((tmp_path / "a").rglob("*.tmp"))


def test_init_seeds_the_database_password_from_the_environment(tmp_path):
    assert _init(tmp_path, POSTGRES_PASSWORD="given by the operator")["postgres_password"] == "given by the operator"


def _openssl_x509(certificate, *options):
    result = subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", *options],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_init_generates_a_self_signed_certificate_for_localhost(tmp_path):
    _init(tmp_path)
    certificate = tmp_path / "certs" / "tls.crt"
    text = _openssl_x509(certificate, "-subject", "-ext", "subjectAltName")
    assert re.search(r"subject=\s*CN\s*=\s*localhost", text)
    assert "DNS:localhost" in text
    assert "IP Address:127.0.0.1" in text
    assert _openssl_x509(certificate, "-checkend", str(365 * 86400)).strip() == "Certificate will not expire"
    assert stat.S_IMODE((tmp_path / "certs" / "tls.key").stat().st_mode) == 0o600
    # The key belongs to the certificate.
    public_keys = [
        subprocess.run(command, capture_output=True, timeout=30, check=True).stdout
        for command in (
            ["openssl", "x509", "-in", str(certificate), "-noout", "-pubkey"],
            ["openssl", "pkey", "-in", str(tmp_path / "certs" / "tls.key"), "-pubout"],
        )
    ]
    assert public_keys[0] == public_keys[1]


def test_init_names_the_configured_host_in_the_certificate(tmp_path):
    _init(tmp_path, TLS_COMMON_NAME="iot.example.com")
    text = _openssl_x509(tmp_path / "certs" / "tls.crt", "-subject", "-ext", "subjectAltName")
    assert re.search(r"CN\s*=\s*iot\.example\.com", text)
    assert "DNS:iot.example.com" in text
    assert "DNS:localhost" in text


def test_init_keeps_a_mounted_certificate(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "tls.crt").write_text("a real certificate")
    (tmp_path / "certs" / "tls.key").write_text("its key")
    _init(tmp_path)
    assert (tmp_path / "certs" / "tls.crt").read_text() == "a real certificate"
    assert (tmp_path / "certs" / "tls.key").read_text() == "its key"


PRINT_ENVIRONMENT = ["sh", "-c", 'printf "%s\\n" "$DJANGO_SECRET_KEY" "$JWT_SIGNING_KEY" "$DATABASE_URL"']


def test_entrypoint_loads_the_generated_secrets_and_builds_the_database_url(tmp_path):
    secrets = _init(tmp_path)
    result = _run_entrypoint(tmp_path, *PRINT_ENVIRONMENT, POSTGRES_USER="hub", POSTGRES_DB="hubdb")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        secrets["django_secret_key"],
        secrets["jwt_signing_key"],
        f"postgres://hub:{secrets['postgres_password']}@db:5432/hubdb",
    ]


def test_entrypoint_prefers_the_environment_then_files_to_generated_secrets(tmp_path):
    _init(tmp_path)
    key_file = tmp_path / "jwt-key"
    key_file.write_text("from a file\n")
    result = _run_entrypoint(
        tmp_path,
        *PRINT_ENVIRONMENT,
        DJANGO_SECRET_KEY="from the environment",
        JWT_SIGNING_KEY_FILE=str(key_file),
        POSTGRES_PASSWORD="p@ss/word:",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "from the environment",
        "from a file",
        "postgres://iothub:p%40ss%2Fword%3A@db:5432/iothub",
    ]


def test_init_generates_the_first_admins_password_only_when_none_is_given(tmp_path):
    """A first admin named without a password gets a generated one in the secrets volume, so nothing secret has
    to be in the environment (nor in `docker compose config`)."""
    assert {"DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"} <= _environment("init").keys()
    generated = tmp_path / "named" / "secrets" / "django_superuser_password"
    _init(tmp_path / "named", DJANGO_SUPERUSER_USERNAME="admin")
    assert re.fullmatch(r"[0-9a-f]{64}", generated.read_text())
    assert stat.S_IMODE(generated.stat().st_mode) == 0o640
    _init(tmp_path / "given", DJANGO_SUPERUSER_USERNAME="admin", DJANGO_SUPERUSER_PASSWORD="given by the operator")
    _init(tmp_path / "nobody")
    for name in ("given", "nobody"):
        assert not (tmp_path / name / "secrets" / "django_superuser_password").exists(), name


def test_entrypoint_loads_the_first_admins_password_from_a_file_then_the_generated_one(tmp_path):
    _init(tmp_path, DJANGO_SUPERUSER_USERNAME="admin")
    given = tmp_path / "admin-password"
    given.write_text("from a file\n")
    show = ["sh", "-c", 'printf "%s" "$DJANGO_SUPERUSER_PASSWORD"']
    from_file = _run_entrypoint(tmp_path, *show, DJANGO_SUPERUSER_PASSWORD_FILE=str(given))
    generated = _run_entrypoint(tmp_path, *show)
    assert from_file.returncode == generated.returncode == 0, from_file.stderr + generated.stderr
    assert from_file.stdout == "from a file"
    assert generated.stdout == (tmp_path / "secrets" / "django_superuser_password").read_text()


def test_entrypoint_keeps_a_given_database_url(tmp_path):
    _init(tmp_path)
    result = _run_entrypoint(tmp_path, *PRINT_ENVIRONMENT, DATABASE_URL="postgres://elsewhere/iothub")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2] == "postgres://elsewhere/iothub"


@pytest.mark.parametrize("command", ["web", "worker"])
def test_services_refuse_to_start_without_secrets(tmp_path, command):
    result = _run_entrypoint(tmp_path, command)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def _compose_defaults(service):
    """The service's environment as compose passes it when nothing is set: each ${NAME:-default} is its default."""
    environment = {}
    for name, value in _environment(service).items():
        match = re.fullmatch(r"\$\{[A-Z0-9_]+:?-(.*)\}", str(value))
        environment[name] = match.group(1) if match else str(value)
    return environment


@pytest.mark.parametrize("service", ["web", "worker"])
def test_the_containers_run_with_debug_off(tmp_path, service):
    """The settings the services load: compose's environment, completed by the entrypoint with the secrets init
    generated, gives DEBUG off and the HTTPS protections on."""
    _init(tmp_path)
    assert "DJANGO_DEBUG" not in DOCKERFILE, "the image must not switch DEBUG on"
    result = _run_entrypoint(tmp_path, sys.executable, "-c", SNAPSHOT, **_compose_defaults(service))
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["DEBUG"] is False
    assert settings["SECURE_SSL_REDIRECT"] is True
    assert settings["SECURE_HSTS_SECONDS"] == 31_536_000
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["CSRF_COOKIE_SECURE"] is True
    assert settings["SECRET_KEY"] == (tmp_path / "secrets" / "django_secret_key").read_text()
