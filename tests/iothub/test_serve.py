"""The app server's settings (iothub/serve.py) from the environment. Serving itself is tested with real processes:
tests/reliability (worker kills, reload, outages), tests/deploy (behind nginx, `make run`, its access log)."""

from pathlib import Path

from granian.constants import Interfaces, SSLProtocols

from iothub import serve


def test_defaults_bound_the_database_connections_to_workers_times_threads():
    options = serve.options({})
    assert options["target"] == "iothub.wsgi:application"
    assert options["interface"] == Interfaces.WSGI
    assert (options["address"], options["port"]) == ("0.0.0.0", 8000)
    # granian's own default for WSGI is half the backpressure (hundreds of threads, each a database connection).
    assert (options["workers"], options["blocking_threads"]) == (4, 2)
    assert options["respawn_failed_workers"] is True
    assert options["log_access"] is False
    assert (options["ssl_cert"], options["ssl_key"]) == (None, None)
    assert options["pid_file"] is None
    assert options["uds"] is None


def test_a_unix_socket_is_bound_with_the_unix_prefix(tmp_path):
    options = serve.options({"WEB_BIND": f"unix:{tmp_path}/web.sock"})
    assert options["uds"] == tmp_path / "web.sock"


def test_the_environment_sets_bind_concurrency_tls_access_log_and_pid_file(tmp_path):
    options = serve.options(
        {
            "WEB_BIND": "127.0.0.1:8443",
            "WEB_CONCURRENCY": "3",
            "WEB_THREADS": "5",
            "WEB_CERTFILE": str(tmp_path / "cert.pem"),
            "WEB_KEYFILE": str(tmp_path / "key.pem"),
            "WEB_ACCESS_LOG": str(tmp_path / "access.log"),
            "WEB_PID_FILE": str(tmp_path / "web.pid"),
        }
    )
    assert (options["address"], options["port"]) == ("127.0.0.1", 8443)
    assert (options["workers"], options["blocking_threads"]) == (3, 5)
    assert (options["ssl_cert"], options["ssl_key"]) == (tmp_path / "cert.pem", tmp_path / "key.pem")
    assert options["ssl_protocol_min"] == SSLProtocols.tls12  # granian's default would refuse TLS 1.2 clients
    assert options["log_access"] is True
    handler = options["log_dictconfig"]["handlers"]["access"]
    assert (handler["class"], Path(handler["filename"])) == ("logging.FileHandler", tmp_path / "access.log")
    assert options["pid_file"] == tmp_path / "web.pid"


def test_an_access_log_on_standard_output_keeps_granian_s_stream_handler():
    options = serve.options({"WEB_ACCESS_LOG": "-"})
    assert options["log_access"] is True
    assert options["log_dictconfig"]["handlers"]["access"]["class"] == "logging.StreamHandler"
