"""`manage.py prepare_database`, the web container's start: web processes starting at once take turns."""

import contextlib
import subprocess
import sys
import time

import pytest

from iothub.management.commands.prepare_database import LOCK_SQL
from tests.conftest import TESTS, connect_separately, env_for_test_database

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_waits_while_another_process_prepares_the_database():
    """A second web container must not migrate while the first does: it waits for the advisory lock the first
    holds, before its first step."""
    holder = connect_separately()
    holder.autocommit = True
    with contextlib.closing(holder), holder.cursor() as cursor:
        cursor.execute(LOCK_SQL)  # the first container, preparing
        second = subprocess.Popen(
            [sys.executable, "manage.py", "prepare_database"],
            cwd=TESTS.parent,
            env=env_for_test_database(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            waiting = 0
            while not waiting and second.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
                cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                waiting = cursor.fetchone()[0]
            assert waiting == 1, "the second process did not wait for the lock"
            assert second.poll() is None
        finally:
            second.terminate()
            output, _ = second.communicate(timeout=30)
    # It never got to migrate.
    assert "Taking the database preparation lock" in output
    assert "Operations to perform" not in output
