"""The buckets of aggregate queries, plain arithmetic: no database."""

from datetime import UTC, datetime, timedelta

# Buckets are aligned to UTC multiples of the interval counted from the Unix epoch, whatever the source.
BUCKET_ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)


def aggregate_buckets(*, start, end, interval):
    """``(first, stop, count)``: the buckets whose start lies in ``[start, end)`` are those starting in
    ``[first, stop)``, ``count`` of them. Each covers a whole interval, so ``stop`` may lie beyond ``end``."""
    width = interval // timedelta(microseconds=1)

    def align_up(moment):
        offset = (moment - BUCKET_ORIGIN) // timedelta(microseconds=1)
        return BUCKET_ORIGIN + timedelta(microseconds=-(-offset // width) * width)

    first, stop = align_up(start), align_up(end)
    return first, stop, (stop - first) // interval
