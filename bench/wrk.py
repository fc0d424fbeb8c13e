"""Load from wrk (apt) driven by bench/load.lua; the figures are wrk's own (its latency histogram)."""

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).with_name("load.lua")
WRK = shutil.which("wrk")


@dataclass
class WrkResult:
    """One wrk run: what it sent and received, its latency percentiles (ms) and its own CPU use."""

    requests: int
    seconds: float
    errors: dict
    latency_ms: dict
    threads: list = field(repr=False)
    cpu_seconds: float = 0.0
    rate: float = 0.0
    batch: int = 1
    connections: int = 0

    @property
    def requests_per_second(self):
        return self.requests / self.seconds

    @property
    def error_count(self):
        return sum(self.errors.values()) + self.not_acknowledged

    @property
    def not_acknowledged(self):
        """Ingest responses other than a 201 accepting every reading sent."""
        return sum(thread["failure_count"] for thread in self.threads)

    @property
    def late_requests(self):
        """Requests of a paced run sent more than 10 ms after their slot."""
        return sum(thread["late_count"] for thread in self.threads)

    def summary(self):
        """The figures that go into the results."""
        figures = {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "requests_per_second": round(self.requests_per_second, 1),
            "errors": self.error_count,
            "error_detail": {**self.errors, "not_201": self.not_acknowledged},
            "latency_ms": self.latency_ms,
            "connections": self.connections,
            "generator_cpu_percent_of_one_core": round(100 * self.cpu_seconds / self.seconds, 1),
        }
        if self.batch > 1 or (self.threads and self.threads[0]["max_reading"] >= 0):
            figures["readings_per_second"] = round(self.requests_per_second * self.batch, 1)
        if self.rate:
            figures["target_rate"] = self.rate
            figures["late_requests"] = self.late_requests
            figures["max_late_ms"] = max((thread["max_late_ms"] for thread in self.threads), default=0)
        return figures


def run(url, *, seconds, threads, connections, env, rate=0, batch=1, timeout=10):
    """Runs wrk against ``url`` for ``seconds`` with load.lua configured by ``env`` (BENCH_* variables)."""
    if WRK is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    connections = max(connections, threads)
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as directory:
        summary_path = Path(directory) / "summary.json"
        environment = {
            **os.environ,
            **env,
            "BENCH_RATE": str(rate),
            "BENCH_BATCH": str(batch),
            "BENCH_THREADS": str(threads),
            "BENCH_SUMMARY": str(summary_path),
        }
        command = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", f"{timeout}s",
                   "-s", str(SCRIPT), url]  # fmt: skip
        cpu_before = _children_cpu_seconds()
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            output, _ = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError(f"wrk did not stop after {seconds} s") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        cpu = _children_cpu_seconds() - cpu_before
        if process.returncode != 0 or not summary_path.exists():
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{output[-3000:]}")
        data = json.loads(summary_path.read_text())
    latency = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        latency_ms={key: round(value / 1000, 2) for key, value in latency.items()},
        threads=data["threads"],
        cpu_seconds=cpu,
        rate=rate,
        batch=batch,
        connections=connections,
    )


def _children_cpu_seconds():
    """CPU seconds (user + system) of every child process reaped so far."""
    usage = os.times()
    return usage.children_user + usage.children_system
