"""Text formats the API reads, one regular expression each (unanchored: ``fullmatch`` them, or embed them in a URL
pattern)."""

import re
from datetime import UTC

# 8-4-4-4-12 hex digits, either case: a device id in a body, a path segment.
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# RFC 3339 in UTC (Z or +00:00), at most 6 fractional digits: datetime.fromisoformat alone would also take naive
# times, other offsets, week dates and more digits. Whether the date exists is fromisoformat's to say.
UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)")


def utc_iso(moment):
    """A time as the API writes it: ISO 8601 in UTC with Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
