"""Brute-force protection of every login path: Django Admin, ``auth/token/`` and ``auth/token/refresh/``.

Two kinds of counter, rows of ``login_counters`` shared by every worker (and every web container):

- **account**: failed logins to one username from one client address. ``LOGIN_FAILURE_LIMIT`` of them within
  ``LOGIN_FAILURE_WINDOW_SECONDS`` lock that pair out for ``LOGIN_LOCKOUT_SECONDS``. Keyed on the pair, so a
  guesser elsewhere cannot lock an admin out of their own address; a successful login resets it.
- **address**: failed logins and refreshes from one client address, whatever the username
  (``AUTH_THROTTLE_RATE``, e.g. 20/min): what stops a spray of usernames. The address then waits one period.
  The refresh endpoint counts here only: it has no username, and the subject of a token that failed to verify is
  whatever the caller wrote.

An attempt takes its place in both counters *before* the password is checked, with one atomic
``INSERT … ON CONFLICT DO UPDATE SET attempts = attempts + 1 … RETURNING``: concurrent attempts on any worker each
get their own number, so no more than the limit are ever checked. An attempt over a limit is refused with
``LoginThrottled`` (a 429) without checking the password, and given back, so waiting out a lock-out is enough to
end it. A successful one is given back too (and resets its account counter): only failures remain counted.
Expired rows are deleted by the attempts that come later, so a spray of usernames or addresses cannot grow the
table without bound.
"""

import math
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from rest_framework.exceptions import Throttled

from iothub.client_address import client_address
from iothub.models import LoginCounter, LoginCounterKind

# Expired rows of other keys each attempt deletes: far more than the two an attempt can create, so they never pile
# up, whether the worker runs or not.
PRUNE_PER_ATTEMPT = 100

REFUSALS = {
    LoginCounterKind.ACCOUNT: "Too many failed logins to this account from your address.",
    LoginCounterKind.ADDRESS: "Too many failed logins from your address.",
}


class LoginThrottled(Throttled):
    """An attempt refused before its password was checked: ``reason`` says which limit, ``wait`` is the seconds
    until it may be tried again (the API's problem says both, with a Retry-After header)."""

    def __init__(self, *, wait, reason):
        super().__init__(wait=wait, detail=reason)
        self.reason = reason


@dataclass(frozen=True)
class Limit:
    attempts: int
    window: int  # seconds in which the attempts count
    lockout: int  # seconds a key stays locked, from the attempt that reached the limit

    @property
    def first_window(self):
        # A limit of 1 locks at the first failure.
        return self.lockout if self.attempts <= 1 else self.window


def limits():
    address_attempts, address_period = settings.AUTH_THROTTLE_RATE
    return {
        LoginCounterKind.ACCOUNT: Limit(
            settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_FAILURE_WINDOW_SECONDS, settings.LOGIN_LOCKOUT_SECONDS
        ),
        LoginCounterKind.ADDRESS: Limit(address_attempts, address_period, address_period),
    }


@dataclass(frozen=True)
class Key:
    kind: str
    username: str
    client_address: str


def _keys_parameters(keys):
    return {
        "kinds": [key.kind for key in keys],
        "usernames": [key.username for key in keys],
        "addresses": [key.client_address for key in keys],
    }


_KEYS = "SELECT * FROM unnest(%(kinds)s::varchar[], %(usernames)s::varchar[], %(addresses)s::inet[])"

# Takes an attempt's place in each counter: a new window when there is none or it is over, otherwise one more
# attempt, and the lock-out (or the address's wait) starts when the limit is reached. A locked counter is left as
# it is (the WHERE) and so not returned: the kinds returned are the counters that admitted the attempt. The same
# statement deletes expired rows of other keys (its own would be updated twice).
_RESERVE = f"""
WITH pruned AS (
    DELETE FROM login_counters WHERE id IN (
        SELECT id FROM login_counters
        WHERE window_ends_at < now() AND (kind, username, client_address) NOT IN ({_KEYS})
        LIMIT {PRUNE_PER_ATTEMPT}
        FOR UPDATE SKIP LOCKED
    )
),
key AS (
    SELECT kind, username, client_address, first_window
    FROM unnest(%(kinds)s::varchar[], %(usernames)s::varchar[], %(addresses)s::inet[], %(first_windows)s::float8[])
        AS key(kind, username, client_address, first_window)
)
INSERT INTO login_counters AS counter (kind, username, client_address, attempts, window_ends_at, last_attempt_at)
SELECT kind, username, client_address, 1, now() + make_interval(secs => first_window), now() FROM key
ON CONFLICT (kind, username, client_address) DO UPDATE SET
    attempts = CASE WHEN counter.window_ends_at <= now() THEN 1 ELSE counter.attempts + 1 END,
    window_ends_at = CASE
        WHEN counter.window_ends_at <= now() THEN excluded.window_ends_at
        WHEN counter.kind = 'account' AND counter.attempts + 1 >= %(account_limit)s
            THEN now() + make_interval(secs => %(account_lockout)s)
        WHEN counter.kind = 'address' AND counter.attempts + 1 >= %(address_limit)s
            THEN now() + make_interval(secs => %(address_lockout)s)
        ELSE counter.window_ends_at
    END,
    last_attempt_at = now()
WHERE counter.window_ends_at <= now()
    OR counter.attempts < CASE counter.kind WHEN 'account' THEN %(account_limit)s ELSE %(address_limit)s END
RETURNING kind
"""

# An attempt that was refused or succeeded leaves the counters as if it had not been made; a success also resets
# the account's counter.
_GIVE_BACK = f"""
WITH reset AS (
    DELETE FROM login_counters
    WHERE %(reset)s AND kind = 'account' AND (kind, username, client_address) IN ({_KEYS})
)
UPDATE login_counters SET attempts = greatest(attempts - 1, 0)
WHERE NOT (%(reset)s AND kind = 'account') AND (kind, username, client_address) IN ({_KEYS})
"""

# How long the longest lock among some keys still lasts.
_WAIT = f"""
SELECT kind, extract(epoch FROM window_ends_at - now())
FROM login_counters
WHERE (kind, username, client_address) IN ({_KEYS})
ORDER BY window_ends_at DESC
LIMIT 1
"""


class Attempt:
    """A login or refresh attempt that got its place in the counters: a failure is already counted."""

    def __init__(self, keys):
        self.keys = keys

    def succeeded(self):
        _give_back(self.keys, reset=True)


def _give_back(keys, *, reset):
    if keys:
        with connection.cursor() as cursor:
            cursor.execute(_GIVE_BACK, {**_keys_parameters(keys), "reset": reset})


def _begin(keys):
    """Counts the attempt under every key, or raises LoginThrottled when one of them is locked."""
    by_kind = limits()
    account, address = by_kind[LoginCounterKind.ACCOUNT], by_kind[LoginCounterKind.ADDRESS]
    with connection.cursor() as cursor:
        cursor.execute(
            _RESERVE,
            {
                **_keys_parameters(keys),
                "first_windows": [float(by_kind[key.kind].first_window) for key in keys],
                "account_limit": account.attempts,
                "account_lockout": account.lockout,
                "address_limit": address.attempts,
                "address_lockout": address.lockout,
            },
        )
        admitted = {kind for (kind,) in cursor.fetchall()}
    if len(admitted) == len(keys):
        return Attempt(keys)
    _give_back([key for key in keys if key.kind in admitted], reset=False)
    refused = [key for key in keys if key.kind not in admitted]
    with connection.cursor() as cursor:
        cursor.execute(_WAIT, _keys_parameters(refused))
        row = cursor.fetchone()
    # A lock that ended meanwhile (or was cleared) still refuses this attempt: the client may retry at once.
    kind, seconds = row if row else (refused[0].kind, 1)
    raise LoginThrottled(wait=max(1, math.ceil(seconds)), reason=REFUSALS[kind])


def login_attempt_begin(*, username, address):
    """Before checking ``username``'s password from ``address``: raises LoginThrottled or returns the Attempt."""
    return _begin(
        [
            Key(LoginCounterKind.ACCOUNT, username[: LoginCounter._meta.get_field("username").max_length], address),
            Key(LoginCounterKind.ADDRESS, "", address),
        ]
    )


def refresh_attempt_begin(*, address):
    """Before verifying a refresh token sent from ``address``: raises LoginThrottled or returns the Attempt."""
    return _begin([Key(LoginCounterKind.ADDRESS, "", address)])


def login_counters_clear(*, username=None, address=None):
    """Deletes counters — and so ends their lock-outs — of a username (its account counters from every address),
    of an address (both kinds), of both together, or all of them. Returns how many rows went."""
    counters = LoginCounter.objects.all()
    if username is not None:
        counters = counters.filter(kind=LoginCounterKind.ACCOUNT, username=username)
    if address is not None:
        counters = counters.filter(client_address=address)
    deleted, _ = counters.delete()
    return deleted


class ProtectedModelBackend(ModelBackend):
    """Django's ModelBackend behind the protection: every password login with a request — Admin's form,
    SimpleJWT's token serializer — goes through here. Without a request (``Client.login()`` in tests, a shell)
    there is no client to count and nothing is counted."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or not username or password is None:
            return super().authenticate(request, username, password, **kwargs)
        attempt = login_attempt_begin(username=username, address=client_address(request))
        user = super().authenticate(request, username, password, **kwargs)
        if user is not None:
            attempt.succeeded()
        return user
