"""The measurements of issue 5, each headline figure with a baseline measured in the same run.

Run by bench.__main__ inside a running Stack, with Django set up on the stack's database.
"""

import io
import json
import math
import statistics
import threading
import time
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pgtrigger
import psycopg2
from django.core.management import call_command, get_commands
from django.db import connection, transaction
from django.db.models import Sum
from psycopg2 import sql
from rest_framework_simplejwt.tokens import AccessToken

from bench import data, procs, profile, wrk
from bench.procs import Group, Sampler
from bench.stack import log
from iothub.models import User
from rules.models import Event, Rule
from telemetry import buckets, selectors
from telemetry.ingest.services import MERGE_READINGS, insert_readings_parameters  # the batches statement, as is

NOMINAL_RATE = 100  # the specified fleet: 100 devices x 1 reading/s
# Variants of the project's nginx configuration (docker/nginx/templates/iothub.conf.template), each an edit of the
# rendered text, that `python -m bench proxy` measures against it.
PROXY_VARIANTS = {
    "no upstream keep-alive": lambda text: text.replace("    keepalive 32;\n", "").replace(
        "    keepalive_timeout 4s;\n", ""
    ),
    "ingest bodies over 16 kB in a file": lambda text: text.replace("client_body_buffer_size 1100k;", ""),
    "ingest bodies unbuffered": lambda text: text.replace(
        "client_body_buffer_size 1100k;", "client_body_buffer_size 1100k;\n            proxy_request_buffering off;"
    ),
}
PROXY_VARIANT_DESCRIPTIONS = {
    "no upstream keep-alive": "a new connection to the app server per request (no `keepalive` in the upstream)",
    "ingest bodies over 16 kB in a file": "ingest without `client_body_buffer_size 1100k` (nginx's default 16 kB: "
    "larger bodies are written to a temporary file first)",
    "ingest bodies unbuffered": "ingest with `proxy_request_buffering off`: the body passed on as it arrives",
}
BATCH_SIZES = (100, 500, 1000)
RULE_COUNTS = (0, 10, 100)
TRIGGER_BATCH = 1000


def percentile(values, p):
    ordered = sorted(values)
    index = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[index]


class Bench:
    def __init__(self, stack, plan, workdir):
        self.stack = stack
        self.plan = plan
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.url = stack.url + "/"
        self.devices = data.create_fleet()
        self.devices_file = self._write("devices.txt", self.devices)
        # Readings of each run get their own stretch of time, 1 µs apart, from now on: current readings, as devices
        # send them (older ones would be late data for the aggregates). A whole run spans seconds.
        self.next_base = data.utc_now().replace(microsecond=0) + timedelta(seconds=1)
        self.groups = [
            Group(stack.primary.name, stack.primary.process.pid),
            Group("postgresql", stack.postmaster_pid()),
            Group("nginx", stack.primary.nginx.pid),
        ]
        self.sampler = Sampler(self.groups)

    def _write(self, name, lines):
        path = self.workdir / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def window(self, readings):
        """The first timestamp of a run sending at most ``readings`` readings (1 µs apart), and its span."""
        span = timedelta(seconds=math.ceil(readings / 1_000_000) + 1)
        base = self.next_base
        self.next_base += span
        return base, span

    def ingest_env(self, base, gateways=0):
        return {
            "BENCH_MODE": "ingest",
            "BENCH_DEVICES": str(self.devices_file),
            "BENCH_BASE_US": str(int(base.timestamp()) * 1_000_000 + base.microsecond),
            "BENCH_BREACH_EVERY": str(data.BREACH_EVERY),
            "BENCH_GATEWAYS": str(gateways),
        }

    def get_env(self, name, paths, token=None):
        env = {"BENCH_MODE": "get", "BENCH_PATHS": str(self._write(f"paths-{name}.txt", paths))}
        if token:
            env["BENCH_AUTH"] = f"Bearer {token}"
        return env

    def ingest(self, seconds, *, threads, connections, rate=0, batch=1, bound_rate=20_000, url=None, gateways=0):
        """One wrk ingest run in a fresh window of time; checks the readings stayed inside it. ``gateways``: the
        batches come from that many gateways, each with its own devices (load.lua)."""
        base, span = self.window(max(bound_rate, rate) * batch * seconds)
        result = wrk.run(
            url or self.url, seconds=seconds, threads=threads, connections=connections,
            env=self.ingest_env(base, gateways), rate=rate, batch=batch,
        )  # fmt: skip
        highest = max(thread["max_reading"] for thread in result.threads)
        if timedelta(microseconds=highest) >= span:
            raise RuntimeError(f"run overflowed its window of time: reading {highest} beyond {span}")
        result.base = base
        return result

    # (0) the app servers compared ---------------------------------------------------------------------------------

    def serving_stack(self):
        """Every app server of the run (bench.servers) behind its own nginx on the project's configuration, on the
        same database: the trivial endpoint, single readings and batches, unpaced."""
        targets = {
            name: (server.url, server.process.pid, server.nginx.pid) for name, server in self.stack.servers.items()
        }
        figures = self._compare(targets, ["trivial", "single", "batch_100", "batch_500"])
        figures["servers"] = {name: server.server.description for name, server in self.stack.servers.items()}
        return figures

    def proxy_settings(self):
        """The project's nginx configuration against variants of it, each in front of the same app server: without
        upstream keep-alive, with ingest bodies over 16 kB buffered in a temporary file, with ingest bodies passed
        on unbuffered as they arrive."""
        primary = self.stack.primary
        targets = {"project": (primary.url, primary.process.pid, primary.nginx.pid)}
        for name, edit in PROXY_VARIANTS.items():
            nginx, url = self.stack.start_nginx_variant(name, edit)
            targets[name] = (url, primary.process.pid, nginx.pid)
        figures = self._compare(targets, ["single", "batch_100", "batch_500"])
        figures["variants"] = {name: PROXY_VARIANT_DESCRIPTIONS[name] for name in PROXY_VARIANTS}
        return figures

    def _compare(self, targets, kinds):
        """Unpaced runs of each kind against each target ``{name: (HTTPS base URL, app server pid, nginx pid)}``.
        The targets take turns run by run, in an order reversed every round, so a slow stretch of the shared
        machine hits all; per target and kind the median round's rate, and the CPU each process group used per
        request over all rounds (app server, nginx, PostgreSQL, wrk): the figure a loaded machine disturbs least.
        Ratios of every target to the first."""
        plan = self.plan
        names = list(targets)
        health = self.get_env("health", ["/api/v1/health/"])
        options = {
            "trivial": {"threads": 2, "connections": 32},
            "single": {"threads": 2, "connections": 32},
            "batch_100": {"threads": 2, "connections": 8, "batch": 100},
            "batch_500": {"threads": 2, "connections": 8, "batch": 500},
        }
        runs = {name: {kind: [] for kind in kinds} for name in names}
        cpu = {name: {kind: Counter() for kind in kinds} for name in names}
        for round_ in range(plan.compare_rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for kind in kinds:
                for name in order:
                    url, app_pid, nginx_pid = targets[name]
                    groups = [
                        Group("app server", app_pid),
                        Group("nginx", nginx_pid),
                        Group("postgresql", self.stack.postmaster_pid()),
                    ]
                    log(f"round {round_ + 1}: {name}, {kind.replace('_', ' of ')}")
                    before = {group.name: group.cpu_seconds() for group in groups}
                    if kind == "trivial":
                        result = wrk.run(url + "/", seconds=plan.compare_seconds, env=health, **options[kind])
                    else:
                        batch = options[kind].get("batch", 1)
                        result = self.ingest(
                            plan.compare_seconds, url=url + "/", bound_rate=20_000 // batch, **options[kind]
                        )
                    for group in groups:
                        cpu[name][kind][group.name] += group.cpu_seconds() - before[group.name]
                    cpu[name][kind]["wrk"] += result.cpu_seconds
                    cpu[name][kind]["requests"] += result.requests
                    runs[name][kind].append(result.summary())
        figures = {"targets": names, "kinds": kinds}
        for name in names:
            figures[name] = {}
            for kind in kinds:
                rounds = runs[name][kind]
                median = sorted(rounds, key=lambda r: r["requests_per_second"])[len(rounds) // 2]
                used = cpu[name][kind]
                requests = max(used.pop("requests"), 1)
                figures[name][kind] = {
                    "median": median,
                    "rounds_requests_per_second": [r["requests_per_second"] for r in rounds],
                    "errors": sum(r["errors"] for r in rounds),
                    "cpu_us_per_request": {
                        group: round(seconds * 1e6 / requests) for group, seconds in sorted(used.items())
                    },
                    "cpu_us_per_request_total": round(sum(used.values()) * 1e6 / requests),
                }
        first = names[0]
        figures["ratios"] = {
            other: {
                kind: {
                    "requests_per_second": round(
                        figures[other][kind]["median"]["requests_per_second"]
                        / figures[first][kind]["median"]["requests_per_second"],
                        3,
                    ),
                    "cpu_per_request": round(
                        figures[other][kind]["cpu_us_per_request_total"]
                        / figures[first][kind]["cpu_us_per_request_total"],
                        3,
                    ),
                    "app_server_cpu_per_request": round(
                        figures[other][kind]["cpu_us_per_request"]["app server"]
                        / max(figures[first][kind]["cpu_us_per_request"]["app server"], 1),
                        3,
                    ),
                }
                for kind in kinds
            }
            for other in names[1:]
        }
        return figures

    # (1) single-reading ingest -----------------------------------------------------------------------------------

    def single_ingest(self):
        plan = self.plan
        health = self.get_env("health", ["/api/v1/health/"])
        figures = {}
        with self.sampler.measure() as memory:
            # The trivial endpoint and ingest alternate, round after round, so a slow stretch of a shared machine
            # hits both; the round with the median ingest rate is reported, the median of the rounds' ratios, and
            # every round is kept.
            rounds = []
            for round_ in range(plan.max_rounds):
                log(f"(1) round {round_ + 1}: trivial endpoint (health), unpaced")
                trivial = wrk.run(self.url, seconds=plan.max_seconds, threads=2, connections=32, env=health).summary()
                attempts = []
                for connections in (32, 16, 8):
                    log(f"(1) round {round_ + 1}: single-reading ingest, unpaced, {connections} connections")
                    result = self.ingest(plan.max_seconds, threads=2, connections=connections)
                    attempts.append(result.summary())
                    if result.error_count == 0:
                        break
                ingest = attempts[-1]
                ratio = round(ingest["requests_per_second"] / trivial["requests_per_second"], 3)
                rounds.append({"trivial": trivial, "ingest": ingest, "ingest_attempts": attempts, "ratio": ratio})
            median = sorted(rounds, key=lambda r: r["ingest"]["requests_per_second"])[len(rounds) // 2]
            figures["trivial_max"] = median["trivial"]
            figures["ingest_max"] = median["ingest"]
            figures["ratio_ingest_to_trivial"] = statistics.median(r["ratio"] for r in rounds)
            figures["max_rounds"] = rounds
            # Errors of any round count against the goal, not only the median one's.
            figures["ingest_max_errors"] = sum(r["ingest"]["errors"] for r in rounds)
            for label, rate in (("nominal", NOMINAL_RATE), ("ten_x", 10 * NOMINAL_RATE)):
                log(f"(1) single-reading ingest at {rate}/s")
                figures[f"ingest_{label}"] = self.ingest(
                    plan.paced_seconds, threads=2, connections=64, rate=rate
                ).summary()
                log(f"(1) trivial endpoint at {rate}/s")
                figures[f"trivial_{label}"] = wrk.run(
                    self.url, seconds=plan.paced_seconds, threads=2, connections=64, env=health, rate=rate
                ).summary()
        for label in ("nominal", "ten_x"):
            ingest_p99 = figures[f"ingest_{label}"]["latency_ms"]["99"]
            trivial_p99 = figures[f"trivial_{label}"]["latency_ms"]["99"]
            figures[f"p99_ratio_{label}"] = round(ingest_p99 / max(trivial_p99, 0.01), 2)
        figures["processes"] = memory
        return figures

    def profile_ingest(self):
        """py-spy over every app server worker during an unpaced single-reading run."""
        return self._profile("ingest", batch=1, connections=32)

    def profile_batches(self):
        """py-spy over every app server worker during unpaced batches of each size (8 connections, as in (2))."""
        return {str(batch): self._profile(f"batch-{batch}", batch=batch, connections=8) for batch in BATCH_SIZES}

    def _profile(self, name, *, batch, connections):
        seconds = self.plan.profile_seconds
        raw = self.workdir / f"py-spy-{name}.txt"
        what = "single-reading ingest" if batch == 1 else f"batches of {batch}"
        log(f"profile: py-spy on the {self.stack.primary.name} workers during {seconds} s of {what}")
        recorder = profile.record(self.stack.primary.process.pid, seconds + 1, raw)
        try:
            time.sleep(0.5)  # py-spy attaches to every worker first
            result = self.ingest(seconds, threads=2, connections=connections, batch=batch, bound_rate=20_000 // batch)
        finally:
            _, errors = recorder.communicate(timeout=seconds + 60)
        if recorder.returncode != 0 or not raw.exists():
            return {"error": f"py-spy failed ({recorder.returncode}): {errors[-500:]}"}
        summary = profile.summarise(raw)
        summary["run"] = result.summary()
        summary["raw"] = raw.name
        return summary

    # (2) batch ingest --------------------------------------------------------------------------------------------

    def batch_ingest(self):
        plan = self.plan
        figures = {}
        with self.sampler.measure() as memory:
            for batch in BATCH_SIZES:
                log(f"(2) batches of {batch} over HTTPS")
                http = self.ingest(plan.batch_seconds, threads=2, connections=8, batch=batch, bound_rate=400)
                log(f"(2) batches of {batch} with psycopg2, the service's INSERT")
                direct = self.direct_insert(batch, connections=8)
                log(f"(2) batches of {batch} over HTTPS from 8 gateways, each with its own devices")
                http_gateways = self.ingest(
                    plan.batch_seconds, threads=2, connections=8, batch=batch, bound_rate=400, gateways=8
                )
                log(f"(2) batches of {batch} with psycopg2, each connection its own devices (a gateway's)")
                gateways = self.direct_insert(batch, connections=8, own_devices=True)
                http_figures = http.summary()
                http_gateway_figures = http_gateways.summary()
                figures[str(batch)] = {
                    "http": http_figures,
                    "direct": direct,
                    "ratio_http_to_direct": round(
                        http_figures["readings_per_second"] / direct["readings_per_second"], 3
                    ),
                    "direct_own_devices": gateways,
                    "ratio_own_devices_to_direct": round(
                        gateways["readings_per_second"] / direct["readings_per_second"], 3
                    ),
                    "http_gateways": http_gateway_figures,
                    "ratio_http_gateways_to_direct_own_devices": round(
                        http_gateway_figures["readings_per_second"] / gateways["readings_per_second"], 3
                    ),
                }
        figures["processes"] = memory
        return figures

    def direct_insert(self, batch, *, connections, own_devices=False):
        """The identical rows (bar their times) inserted by ``connections`` psycopg2 connections in autocommit, as
        telemetry.ingest.services.reading_ingest does, one statement per batch; bodies are built before the clock
        starts.

        Every batch holds readings of the whole fleet, as the HTTPS run's do, so concurrent statements wait for each
        other's locks on the devices' rate counters (ingest_request_counts) until they commit. ``own_devices``:
        each connection sends batches of a part of the fleet of its own instead, as gateways that each serve their
        devices would; the same readings per batch."""
        readings = max(self.plan.direct_readings // batch * batch, batch * connections)
        base, _ = self.window(readings)
        if own_devices:
            share = readings // connections // batch * batch or batch
            groups = [self.devices[index::connections] for index in range(connections)]
            queues = [list(reversed(data.batch_bodies(group, base, readings=share, batch=batch))) for group in groups]
            readings = share * connections
        else:
            bodies = data.batch_bodies(self.devices, base, readings=readings, batch=batch)
            queues = [list(reversed(bodies))] * connections  # one queue, shared
        lock = threading.Lock()
        inserted = [0]
        failures = []
        conns = [psycopg2.connect(self.stack.database_url) for _ in range(connections)]

        def work(conn, queue):
            conn.autocommit = True
            try:
                with conn.cursor() as cursor:
                    while True:
                        with lock:
                            if not queue:
                                return
                            body = queue.pop()
                        [(count, _merged)] = MERGE_READINGS.execute(cursor, insert_readings_parameters(body))
                        with lock:
                            inserted[0] += count
            except Exception as exc:  # re-raised in the caller's thread
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(conn, queue)) for conn, queue in zip(conns, queues, strict=True)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        for conn in conns:
            conn.close()
        if failures:
            raise failures[0]
        if inserted[0] != readings:
            raise RuntimeError(f"direct insert stored {inserted[0]} of {readings} readings")
        return {
            "readings": readings,
            "seconds": round(elapsed, 2),
            "readings_per_second": round(readings / elapsed, 1),
            "connections": connections,
            "own_devices": own_devices,
        }

    # (3) rule-trigger overhead -----------------------------------------------------------------------------------

    def trigger_overhead(self):
        plan = self.plan
        figures = {}
        readings = plan.trigger_batches * TRIGGER_BATCH
        try:
            # The last run: 100 rules of every shape (threshold, duration, hysteresis, no-data), issue 14.
            for count, mixed in [*((count, False) for count in RULE_COUNTS), (100, True)]:
                data.trigger_rules(count, self.devices, mixed=mixed)
                ratios, ignored_total, triggered_total = [], 0.0, 0.0
                for round_ in range(plan.trigger_rounds):
                    log(f"(3) {count} enabled {'mixed ' if mixed else ''}rules, round {round_ + 1}")
                    ignored_base, _ = self.window(readings)
                    triggered_base, _ = self.window(readings)
                    ignored = data.batch_bodies(self.devices, ignored_base, readings=readings, batch=TRIGGER_BATCH)
                    triggered = data.batch_bodies(self.devices, triggered_base, readings=readings, batch=TRIGGER_BATCH)
                    seconds = {True: 0.0, False: 0.0}
                    # The kinds alternate every 5 batches, so load from elsewhere on the machine hits both alike.
                    for block in range(0, len(ignored), 5):
                        for is_ignored, bodies in ((True, ignored), (False, triggered)):
                            for body in bodies[block : block + 5]:
                                seconds[is_ignored] += self._insert_batch(body, ignored=is_ignored)
                    ratios.append(seconds[False] / seconds[True])
                    ignored_total += seconds[True]
                    triggered_total += seconds[False]
                rows = readings * plan.trigger_rounds
                figures[f"{count} mixed" if mixed else str(count)] = {
                    "ignored_readings_per_second": round(rows / ignored_total, 1),
                    "trigger_readings_per_second": round(rows / triggered_total, 1),
                    "ratio": round(statistics.median(ratios), 3),
                    "round_ratios": [round(ratio, 3) for ratio in ratios],
                }
        finally:
            Rule.objects.update(enabled=False)
            Rule.objects.filter(name__in=[data.INGEST_RULE, data.DATASET_RULE]).update(enabled=True)
        figures["readings_per_kind"] = readings * plan.trigger_rounds
        figures["batch"] = TRIGGER_BATCH
        figures["breach_share"] = round(1 / data.BREACH_EVERY, 4)
        return figures

    def no_data_cycle(self):
        """One evaluation of the no-data rules (rules_evaluate_no_data()) over plan.no_data_devices devices x 3
        metrics, a reading every 30 s for 10 minutes: the first cycle opens the silences of the 2 % silent (on one
        metric or on all), the next ones find nothing new; medians of 5 (issue 14: ≤ 1 s)."""
        devices = self.plan.no_data_devices
        log(f"(3b) no-data rules: {devices:,} devices x 3 metrics")
        # Section (3)'s rules go, with their silences: this measures the three rules below alone.
        Rule.objects.filter(name__startswith="bench trigger").delete()
        readings, loaded_at = data.no_data_fleet(devices)

        def cycle():
            # As of the moment the readings end, however long loading them took on a busy machine.
            began = time.perf_counter()
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT events_opened, silences_ended FROM rules_evaluate_no_data(%s)",
                    [loaded_at + timedelta(seconds=1)],
                )
                opened, _ = cursor.fetchone()
            return time.perf_counter() - began, opened

        first_seconds, first_opened = cycle()
        later = [cycle() for _ in range(5)]
        try:
            return {
                "devices": devices,
                "pairs": devices * 3,
                "readings": readings,
                "first_cycle_seconds": round(first_seconds, 3),
                "first_cycle_events": first_opened,
                "cycle_seconds": round(statistics.median(seconds for seconds, _ in later), 3),
                "cycle_round_seconds": [round(seconds, 3) for seconds, _ in later],
            }
        finally:
            Rule.objects.filter(name__startswith="bench no-data").update(enabled=False)

    def _insert_batch(self, body, *, ignored):
        """Seconds to insert one batch in its own transaction, with the trigger or with it ignored."""
        began = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            if ignored:
                with pgtrigger.ignore(data.TRIGGER, data.MERGED_TRIGGER):
                    MERGE_READINGS.execute(cursor, insert_readings_parameters(body))
            else:
                MERGE_READINGS.execute(cursor, insert_readings_parameters(body))
        return time.perf_counter() - began

    # (6) soak ------------------------------------------------------------------------------------------------------

    def soak(self, seconds, rate=10 * NOMINAL_RATE, threads=50):
        """Holds ``rate`` single readings/s for ``seconds`` with one connection per wrk thread (so each thread's
        responses map to its requests), then checks every acknowledged reading is stored and the rule's
        occurrences match the breaches."""
        rule = data.ingest_rule()
        occurrences_before = self._occurrences(rule)
        log(f"(6) soak: {rate} readings/s for {seconds} s")
        with self.sampler.measure() as memory:
            result = self.ingest(seconds, threads=threads, connections=threads, rate=rate, bound_rate=rate * 2)
        figures = result.summary()
        figures["processes"] = memory
        figures["check"] = self._verify_soak(result, threads, rule, occurrences_before)
        return figures

    def _occurrences(self, rule):
        return Event.objects.filter(rule=rule).aggregate(total=Sum("occurrence_count"))["total"] or 0

    def _verify_soak(self, result, threads, rule, occurrences_before):
        acknowledged, in_flight = [], []
        unverifiable = []
        for thread in result.threads:
            failed = {int(item.split(":")[0]) for item in thread["failures"].split(",") if item}
            if len(failed) < thread["failure_count"]:
                unverifiable.append(f"thread {thread['id']}: more failures than recorded")
            for k in range(thread["sent"]):
                n = k * threads + thread["id"]
                if k >= thread["responses"]:
                    in_flight.append(n)
                elif k not in failed:
                    acknowledged.append(n)
        count = len(self.devices)
        span_end = result.base + timedelta(microseconds=max([*acknowledged, *in_flight], default=0) + 1)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE bench_acked (n bigint) ON COMMIT PRESERVE ROWS")
            cursor.execute("CREATE TEMP TABLE bench_devices (idx int PRIMARY KEY, id uuid)")
            cursor.execute("INSERT INTO bench_acked SELECT unnest(%s::bigint[])", [acknowledged])
            cursor.execute(
                "INSERT INTO bench_devices SELECT i - 1, d FROM unnest(%s::uuid[]) WITH ORDINALITY AS u(d, i)",
                [self.devices],
            )
            params = {"base": result.base, "end": span_end, "count": count}
            cursor.execute(
                """
                SELECT a.n FROM bench_acked a
                JOIN bench_devices d ON d.idx = a.n %% %(count)s
                WHERE NOT EXISTS (
                    SELECT FROM telemetry t
                    WHERE t.device_id = d.id AND t.time = %(base)s + a.n * interval '1 microsecond'
                      AND t.time >= %(base)s AND t.time < %(end)s)
                ORDER BY a.n
                """,
                params,
            )
            missing_readings = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                """
                SELECT count(*), count(*) FILTER (WHERE (t.metrics ->> 'temperature')::float8 > 100)
                FROM telemetry t JOIN bench_devices d ON d.id = t.device_id
                WHERE t.time >= %(base)s AND t.time < %(end)s
                """,
                params,
            )
            stored, stored_breaches = cursor.fetchone()
            cursor.execute("DROP TABLE bench_acked, bench_devices")
        occurrences = self._occurrences(rule) - occurrences_before
        acked_breaches = sum(1 for n in acknowledged if n % data.BREACH_EVERY == 0)
        in_flight_breaches = sum(1 for n in in_flight if n % data.BREACH_EVERY == 0)
        passed = (
            not unverifiable
            and not missing_readings
            and len(acknowledged) <= stored <= len(acknowledged) + len(in_flight)
            and occurrences == stored_breaches
            and acked_breaches <= occurrences <= acked_breaches + in_flight_breaches
        )
        return {
            "passed": passed,
            "acknowledged": len(acknowledged),
            "acknowledged_missing_from_database": len(missing_readings),
            "missing_examples": [f"reading {n} (thread {n % threads})" for n in missing_readings[:10]],
            "in_flight_at_stop": len(in_flight),
            "stored": stored,
            "breaches_acknowledged": acked_breaches,
            "breaches_in_flight_at_stop": in_flight_breaches,
            "stored_breaching_readings": stored_breaches,
            "occurrence_count_added": occurrences,
            "unverifiable": unverifiable,
        }

    # (4) queries -------------------------------------------------------------------------------------------------

    def queries(self):
        plan = self.plan
        devices = max(1, round(100 * plan.scale))
        end = data.minute_floor(data.utc_now())
        days = plan.days
        log(f"(4) dataset: {devices} devices x {days} days x 1 reading/min, 3 numeric metrics")
        dataset = data.create_dataset_fleet(devices)
        began = time.perf_counter()
        rows = data.load_dataset(self.stack.database_url, end=end, days=days)
        figures = {
            "dataset": {
                "scale": plan.scale,
                "devices": devices,
                "days": days,
                "readings": rows,
                "load_seconds": round(time.perf_counter() - began, 1),
                "events": Event.objects.count(),
            }
        }
        log("(4) refreshing the aggregates")
        figures["dataset"]["aggregate_refresh"] = self._refresh_aggregates()
        token = self._token()
        hour_end = end.replace(minute=0)
        day_end = hour_end.replace(hour=0)
        hourly_days, daily_days = min(30, days), min(90, days)
        aggregates = {
            f"aggregate_1h_{hourly_days}d": (hour_end - timedelta(days=hourly_days), hour_end, "1h"),
            f"aggregate_1d_{daily_days}d": (day_end - timedelta(days=daily_days), day_end, "1d"),
        }

        def stamp(moment):
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        def aggregate_paths(start, stop, interval):
            return [
                f"/api/v1/devices/{device}/telemetry/aggregate/?start={stamp(start)}&end={stamp(stop)}"
                f"&interval={interval}"
                for device in dataset
            ]

        raw_paths = [
            f"/api/v1/devices/{device}/telemetry/?start={stamp(hour_end - timedelta(days=d, hours=1))}"
            f"&end={stamp(hour_end - timedelta(days=d))}"
            for d in range(0, days, 7)
            for device in dataset
        ]
        endpoints = {
            **{name: aggregate_paths(*window) for name, window in aggregates.items()},
            "raw_1h": raw_paths,
            "latest": [f"/api/v1/devices/{device}/telemetry/latest/" for device in dataset],
            "device_list": ["/api/v1/devices/"],
            "event_list": ["/api/v1/events/"],
        }
        auth = {"Authorization": f"Bearer {token}"}
        first_aggregate = next(iter(aggregates))
        status, body = self.stack.http("GET", endpoints[first_aggregate][0], headers=auth)
        if status != 200 or len(json.loads(body)["results"]) != hourly_days * 24 * 3:
            raise RuntimeError(f"aggregate answered {status}: {body[:300]!r}")
        figures["api"] = {}
        for name, paths in endpoints.items():
            # As many seconds as 10 calls take (1 in a smoke run), and at least the plan's; at most a minute.
            began = time.perf_counter()
            status, body = self.stack.http("GET", paths[0], headers=auth, timeout=120)
            if status != 200:
                raise RuntimeError(f"{name} answered {status}: {body[:300]!r}")
            calls = 1 if plan.name == "smoke" else 10
            seconds = max(plan.query_seconds, min(60, math.ceil((time.perf_counter() - began) * calls * 1.2)))
            log(f"(4) {name}: {len(paths)} distinct requests, one client, {seconds} s")
            result = wrk.run(
                self.url, seconds=seconds, threads=1, connections=1, env=self.get_env(name, paths, token), timeout=60
            )
            figures["api"][name] = result.summary()
        log("(4) baseline: the aggregates from the views vs computed from raw readings, in SQL")
        figures["sql"] = {name: self._sql_aggregate(dataset, *window) for name, window in aggregates.items()}
        return figures

    # (7) CSV export -----------------------------------------------------------------------------------------------

    def export(self):
        """One device's readings as CSV through nginx, read to the end by one client: rows/s, and the peak RSS of
        the app server worker that streamed them against its RSS before (flat memory: the two stay close)."""
        rows = self.plan.export_rows
        end = data.minute_floor(data.utc_now())
        log(f"(7) export: {rows:,} readings of one device")
        device = data.load_export_device(self.stack.database_url, rows=rows, end=end)
        token = self._token("bench-export")
        start = end - timedelta(milliseconds=100 * rows)
        path = (
            f"/api/v1/devices/{device}/telemetry/?format=csv&order=asc"
            f"&start={start.strftime('%Y-%m-%dT%H:%M:%SZ')}&end={end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        server = Group("app server", self.stack.primary.process.pid)
        workers_before = {pid: procs.rss_kb(pid) for pid in server.pids()[1:]}
        sampler = Sampler([server], interval=0.2)
        request = urllib.request.Request(self.stack.url + path, headers={"Authorization": f"Bearer {token}"})
        lines = size = 0
        with sampler.measure() as memory:
            began = time.perf_counter()
            with urllib.request.urlopen(request, context=self.stack.tls_context(), timeout=600) as response:
                first_byte = time.perf_counter() - began
                while block := response.read(256 * 1024):
                    lines += block.count(b"\n")
                    size += len(block)
            seconds = time.perf_counter() - began
        if lines != rows + 1:
            raise RuntimeError(f"the export has {lines - 1} rows, not {rows}")
        return {
            "rows": rows,
            "megabytes": round(size / 1024 / 1024, 1),
            "seconds": round(seconds, 2),
            "first_byte_seconds": round(first_byte, 3),
            "rows_per_second": round(rows / seconds),
            "worker_rss_before_mb": round(max(workers_before.values()) / 1024, 1),
            "worker_peak_rss_mb": memory["app server"]["largest_child_rss_mb"],
            "app_server_cpu_seconds": memory["app server"]["cpu_seconds"],
        }

    def _refresh_aggregates(self):
        """Brings the aggregates up to date: the project's own command where it has one (both editions), else the
        continuous aggregates' refresh (TSL); the Apache build's plain views need none."""
        if "refresh_aggregates" in get_commands():
            began = time.perf_counter()
            call_command("refresh_aggregates", stdout=io.StringIO())
            return {"manage.py refresh_aggregates": round(time.perf_counter() - began, 1)}
        if self.edition() != "timescale":
            return "n/a (Apache edition: the aggregates are plain views over raw readings)"
        seconds = {}
        with psycopg2.connect(self.stack.database_url) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                for view in ("telemetry_1m", "telemetry_1h", "telemetry_1d"):
                    began = time.perf_counter()
                    cursor.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", [view])
                    seconds[view] = round(time.perf_counter() - began, 1)
        return seconds

    def edition(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(current_setting('timescaledb.license', true), 'apache')")
            return cursor.fetchone()[0]

    def _token(self, username="bench-viewer"):
        """An access token of a viewer, signed with the stack's key (the login endpoint is not what is measured,
        and its password hashing would cost the smoke run seconds)."""
        user = User.objects.create_user(username=username, password=None, role="viewer")
        return str(AccessToken.for_user(user))

    def _sql_aggregate(self, dataset, start, end, interval):
        """p50/p95 (ms) of the aggregate query the API runs (from the view) and of the same buckets computed from
        raw readings (telemetry.selectors' raw query), alternating, over the dataset's devices."""
        width = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}[interval]
        first, stop, _ = buckets.aggregate_buckets(start=start, end=end, interval=width)
        view = selectors.aggregate_source(width)
        queries = {
            "view": sql.SQL(selectors._FROM_AGGREGATE).format(source=sql.Identifier(view), metric_filter=sql.SQL("")),
            "raw": sql.SQL(selectors._FROM_RAW).format(metric_filter=sql.SQL("")),
        }
        timings = {"view": [], "raw": []}
        with connection.cursor() as cursor:
            for i in range(self.plan.sql_repeats):
                params = {
                    "device": dataset[i % len(dataset)],
                    "interval": width,
                    "origin": buckets.BUCKET_ORIGIN,
                    "first": first,
                    "stop": stop,
                    "metrics": [],
                }
                for kind, query in queries.items():
                    began = time.perf_counter()
                    cursor.execute(query.as_string(cursor.connection), params)
                    rows = cursor.fetchall()
                    timings[kind].append((time.perf_counter() - began) * 1000)
        figures = {
            kind: {"p50": round(statistics.median(values), 2), "p95": round(percentile(values, 95), 2)}
            for kind, values in timings.items()
        }
        figures["source"] = view
        figures["buckets_x_metrics"] = len(rows)
        figures["ratio_raw_to_aggregate"] = round(figures["raw"]["p50"] / figures["view"]["p50"], 3)
        return figures

    # (5) storage -------------------------------------------------------------------------------------------------

    def storage(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), hypertable_size('telemetry') FROM telemetry")
            rows, size = cursor.fetchone()
        figures = {
            "readings": rows,
            "bytes": size,
            "mb_per_million_readings": round(size / 1024 / 1024 / rows * 1e6, 1),
            "compressed_mb_per_million_readings": "n/a (Apache edition: no compression)",
        }
        if self.edition() == "timescale":
            figures["compressed_mb_per_million_readings"] = self._compressed_size(rows)
        return figures

    def _compressed_size(self, rows):
        """Compresses every chunk and measures again (TSL only; the last measurement of a run)."""
        with psycopg2.connect(self.stack.database_url) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT compression_enabled FROM timescaledb_information.hypertables "
                    "WHERE hypertable_name = 'telemetry'"
                )
                if not cursor.fetchone()[0]:
                    cursor.execute(
                        "ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id')"
                    )
                cursor.execute("SELECT count(compress_chunk(c, true)) FROM show_chunks('telemetry') c")
                cursor.execute("SELECT hypertable_size('telemetry')")
                size = cursor.fetchone()[0]
        return round(size / 1024 / 1024 / rows * 1e6, 1)
