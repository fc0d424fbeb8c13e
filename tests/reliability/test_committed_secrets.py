"""No secret is committed: every tracked file (`git ls-files`) is scanned for private keys, cloud and service
tokens, JWTs and password-like literals; `.env.example` documents variables without giving secret values."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reliability.conftest import RESULTS

ROOT = Path(__file__).resolve().parents[2]

# Anywhere, tests included: nothing that could be a real credential.
CREDENTIALS = {
    "private key": re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_?secret_?access_?key\W{1,4}[A-Za-z0-9/+]{40}\b"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[A-Za-z0-9]{16,}"),
}
# Outside tests/: a quoted literal assigned to a name ending in password, secret, token or key.
SECRET_LITERAL = re.compile(
    r"""(?ix) \b[\w.-]*(?:password|passwd|secret|token|api_?key|secret_?key|signing_?key|private_?key)
    ["']? (?: \s*=>?\s* | :\s* ) [rbf]?["'] ([^"'\s]{4,}) ["']"""
)
# Variable references and placeholders are not literals: $VAR, ${VAR}, :'psql_var', %(name)s, <placeholder>.
NOT_A_LITERAL = re.compile(r"[$%<{]|^:")
# Kept small and explicit: documented example values, not secrets.
ALLOWED = {
    ("README.md", "change-me-now-42"),  # the curl session's example admin password
    ("README.md", "operator-pass-123"),  # the curl session's example operator password
}
# Tracked files that may hold a credential by their very name.
CREDENTIAL_FILES = re.compile(r"(^|/)(\.env|id_(rsa|dsa|ecdsa|ed25519)|.*\.(pem|key|p12|pfx|jks|keystore))$")


def _tracked_files():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree: there are no tracked files to scan")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
    return [name for name in listing.stdout.decode().split("\0") if name]


def _text(name):
    path = ROOT / name
    if not path.is_file():
        return None  # deleted in the work tree
    data = path.read_bytes()[:2_000_000]
    return None if b"\0" in data else data.decode("utf-8", "replace")


def findings(name, text):
    found = [
        (name, kind, match.group(0)[:80]) for kind, pattern in CREDENTIALS.items() for match in pattern.finditer(text)
    ]
    if not name.startswith("tests/"):
        for match in SECRET_LITERAL.finditer(text):
            value = match.group(1)
            if not NOT_A_LITERAL.search(value) and (name, value) not in ALLOWED:
                found.append((name, "secret literal", match.group(0)[:80]))
    return found


def test_no_secret_in_tracked_files():
    files = _tracked_files()
    found, scanned = [], 0
    for name in files:
        text = _text(name)
        if text is not None:
            scanned += 1
            found += findings(name, text)
    assert not found, "\n".join(map(str, found))
    assert scanned > 50, "the scan saw the repository"
    RESULTS["committed secrets scan"] = {
        "tracked_text_files_scanned": scanned,
        "findings": 0,
        "allowlist": len(ALLOWED),
    }


def test_no_credential_file_is_tracked():
    assert not [name for name in _tracked_files() if CREDENTIAL_FILES.search(name)]


def test_env_example_gives_no_secret_values():
    assignments = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if re.match(r"[A-Z_]+=", line)
    )
    secret_names = [name for name in assignments if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", name)]
    assert {"DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "POSTGRES_PASSWORD", "DJANGO_SUPERUSER_PASSWORD"} <= set(
        secret_names
    )
    assert {name: assignments[name] for name in secret_names if assignments[name]} == {}


# The patterns catch what they are meant to (built at run time, so this file holds no such string itself).
PLANTED = [
    ("docs/x.md", "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE...", "private key"),
    ("docs/x.md", "-----BEGIN " + "PRIVATE KEY-----", "private key"),
    ("a.py", "key = '" + "AKIA" + "ABCDEFGHIJKLMNOP'", "AWS access key id"),
    ("a.py", "eyJ" + "hbGciOiJIUzI1NiJ9.eyJ" + "zdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXZhbHVl", "JWT"),
    ("a.py", 'DB_PASSWORD = "' + 's3cr3t-value"', "secret literal"),
    ("a.yml", "api_key: '" + "abcd1234efgh'", "secret literal"),
    ("a.json", '{"client_secret": "' + 'abcdef123456"}', "secret literal"),
]


@pytest.mark.parametrize(("name", "text", "kind"), PLANTED)
def test_the_scan_finds_planted_secrets(name, text, kind):
    assert kind in [found_kind for _, found_kind, _ in findings(name, text)]


@pytest.mark.parametrize(
    "text",
    [
        'password="$password"',
        "PASSWORD :'password'",
        'TOKEN_URL = "/api/v1/auth/token/"',
        'PASSWORD = "%(password)s"',
        "DJANGO_SECRET_KEY=",
    ],
)
def test_the_scan_ignores_references_and_empty_values(text):
    assert findings("scripts/x.sh", text) == []
