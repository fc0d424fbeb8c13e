import pytest

# The generated certificate and a client trusting it, for the stack tests beside test_proxy_tls.py.
from tests.deploy.test_proxy_tls import certificate, tls  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test of the compose stack shows the end of every container's log beside its traceback."""
    outcome = yield
    report = outcome.get_result()
    stack = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
    if report.failed and stack is not None:
        report.sections.append(("docker compose logs (last lines per container)", stack.logs(tail=150)))
