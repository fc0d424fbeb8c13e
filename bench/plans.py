"""How long and how big each measurement is, per mode (importable before Django is set up)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How long and how big each measurement is."""

    name: str
    durable: bool
    max_seconds: int  # unpaced runs: maximum throughput
    max_rounds: int  # (1): trivial and ingest alternate this many times; the median round is reported
    paced_seconds: int  # runs at a fixed rate: latency
    profile_seconds: int
    batch_seconds: int
    direct_readings: int  # per batch size
    trigger_batches: int  # per kind (ignored, triggered), per rule count and round
    trigger_rounds: int
    scale: float  # query dataset: scale x 100 devices, 1 reading/min
    days: int  # query dataset: days of readings (the 1 d aggregate covers up to 90, the 1 h one up to 30)
    query_seconds: int
    sql_repeats: int
    soak_seconds: int
    compare_seconds: int  # (0): each unpaced run of each app server
    compare_rounds: int
    export_rows: int = 20_000  # readings of one device exported as CSV through the API
    no_data_devices: int = 10_000  # (3b) devices x 3 metrics watched by no-data rules


PLANS = {
    "full": Plan("full", True, 8, 3, 12, 10, 12, 200_000, 100, 2, 0.05, 90, 8, 20, 30, 6, 3, export_rows=1_000_000),
    "smoke": Plan("smoke", False, 1, 1, 1, 1, 1, 5_000, 3, 1, 0.01, 2, 1, 1, 2, 1, 1, no_data_devices=200),
    "soak": Plan("soak", True, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
}
