"""Memory and CPU of the stack's processes, sampled from /proc while a measurement runs.

RSS counts shared pages in every process that maps them (PostgreSQL's shared buffers once per backend), so the
sums are upper bounds; PSS (from smaps_rollup) splits shared pages between their users and adds up to what the
group really holds.
"""

import os
import threading
import time
from contextlib import contextmanager

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid):
    """Direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid):
    """Resident set size of ``pid`` now."""
    return _status_kb(pid, "VmRSS:")


def _pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid, *, with_reaped_children):
    """utime + stime of ``pid``; with its reaped children's (a postmaster reaps the backends that ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


class Group:
    """A parent process and its children: an app server's main process and workers, the postmaster and its
    backends."""

    def __init__(self, name, parent_pid):
        self.name = name
        self.parent = parent_pid

    def pids(self):
        return [self.parent, *children(self.parent)]

    def cpu_seconds(self):
        pids = self.pids()
        return _cpu_seconds(pids[0], with_reaped_children=True) + sum(
            _cpu_seconds(pid, with_reaped_children=False) for pid in pids[1:]
        )


class Sampler:
    """``with sampler.measure() as figures:`` peak memory and CPU seconds of each group while the block runs."""

    def __init__(self, groups, interval=1.0):
        self.groups = groups
        self.interval = interval

    def _sample(self, peaks):
        for group in self.groups:
            pids = group.pids()
            rss = [_status_kb(pid, "VmRSS:") for pid in pids]
            worker_rss = rss[1:] or rss
            pss = sum(_pss_kb(pid) for pid in pids)
            peak = peaks[group.name]
            peak["rss_sum_mb"] = max(peak["rss_sum_mb"], sum(rss) / 1024)
            peak["pss_sum_mb"] = max(peak["pss_sum_mb"], pss / 1024)
            peak["largest_child_rss_mb"] = max(peak["largest_child_rss_mb"], max(worker_rss) / 1024)
            peak["processes"] = max(peak["processes"], len(pids))

    @contextmanager
    def measure(self):
        peaks = {
            group.name: {"rss_sum_mb": 0.0, "pss_sum_mb": 0.0, "largest_child_rss_mb": 0.0, "processes": 0}
            for group in self.groups
        }
        cpu_before = {group.name: group.cpu_seconds() for group in self.groups}
        began = time.monotonic()
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                self._sample(peaks)
                stop.wait(self.interval)

        thread = threading.Thread(target=loop, name="bench-sampler", daemon=True)
        thread.start()
        figures = {}
        try:
            yield figures
        finally:
            stop.set()
            thread.join()
            self._sample(peaks)
            elapsed = time.monotonic() - began
            for group in self.groups:
                peak = peaks[group.name]
                cpu = group.cpu_seconds() - cpu_before[group.name]
                figures[group.name] = {
                    **{key: round(value, 1) for key, value in peak.items()},
                    "cpu_seconds": round(cpu, 2),
                    "cpu_percent_of_one_core": round(100 * cpu / elapsed, 1) if elapsed else 0.0,
                }
