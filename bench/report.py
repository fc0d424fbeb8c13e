"""Results: machine facts, the goals of issue 5 checked against the figures, and the Markdown/JSON files."""

import json
import os
import platform
import runpy
import subprocess
from datetime import UTC, datetime

import django
from django.db import connection
from granian import __version__ as granian_version
from gunicorn import __version__ as gunicorn_version

from bench.nginx import NGINX, ROOT
from bench.servers import DEFAULT
from bench.wrk import WRK
from iothub import serve


def _run(*command, strip=True):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except OSError:
        return ""
    output = result.stdout or result.stderr
    return output.strip() if strip else output


def git_revision():
    """The commit measured, and the files of the work tree that differ from it (they were measured too)."""
    sha = _run("git", "rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line[3:]
        for line in _run("git", "status", "--porcelain", strip=False).splitlines()
        if line[3:] and not line[3:].startswith("bench/results/")
    ]
    return {"sha": sha, "dirty": bool(changed), "uncommitted_changes": changed}


def machine(stack):
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
            " coalesce(current_setting('timescaledb.license', true), 'apache'),"
            " current_setting('shared_buffers'), current_setting('synchronous_commit'), current_setting('fsync')"
        )
        pg_version, tsdb_version, edition, shared_buffers, synchronous_commit, fsync = cursor.fetchone()
    # The settings files read with the stack's environment: the workers and threads each server really ran.
    gunicorn = runpy.run_path(str(ROOT / "bench" / "gunicorn.conf.py"))
    granian = serve.options()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "postgresql": pg_version,
        "timescaledb": tsdb_version,
        "timescaledb_edition": edition,
        "postgresql_settings": {
            "shared_buffers": shared_buffers,
            "synchronous_commit": synchronous_commit,
            "fsync": fsync,
        },
        "python": platform.python_version(),
        "django": django.get_version(),
        "app_servers": {
            "granian": {
                "version": granian_version,
                "workers": granian["workers"],
                "threads": granian["blocking_threads"],
            },
            "gunicorn": {"version": gunicorn_version, "workers": gunicorn["workers"], "threads": gunicorn["threads"]},
        },
        "nginx": _run(NGINX, "-v").removeprefix("nginx version: "),
        "wrk": _run(WRK, "-v").split(" [")[0],
    }


def goals(results):
    """``[(goal, figure, met)]`` for the goals this run measured: issue 5's, raised by issue 16 where it set new
    ones (single readings 1,500/s, p99 at 10x, batches of 100 and 500)."""
    rows = []
    single = results.get("single_ingest")
    if single:
        median, errors = single["ingest_max"], single["ingest_max_errors"]
        rows.append(("single-reading ingest ≥ 1,500 readings/s, 0 errors",
                     f"{median['requests_per_second']:,.0f}/s (median of {len(single['max_rounds'])} rounds), "
                     f"{errors} errors", median["requests_per_second"] >= 1500 and errors == 0))  # fmt: skip
        for label, name in (("nominal", "nominal load (100/s)"), ("ten_x", "10x nominal (1,000/s)")):
            run = single[f"ingest_{label}"]
            rows.append((f"single-reading p99 ≤ 50 ms at {name}",
                         f"p99 {run['latency_ms']['99']} ms at {run['requests_per_second']:,.0f}/s",
                         run["latency_ms"]["99"] <= 50))  # fmt: skip
    batches = results.get("batch_ingest")
    if batches:
        # batch size: (readings/s, HTTPS/direct ratio) to reach
        targets = {"100": (25_000, 0.5), "500": (50_000, 0.7), "1000": (20_000, 0.5)}
        for size, figures in batches.items():
            if size not in targets:
                continue
            rate, ratio = figures["http"]["readings_per_second"], figures["ratio_http_to_direct"]
            least_rate, least_ratio = targets[size]
            rows.append((f"batches of {size}: ≥ {least_rate:,} readings/s over HTTPS and HTTPS/direct ≥ {least_ratio}",
                         f"{rate:,.0f}/s, ratio {ratio}", rate >= least_rate and ratio >= least_ratio))  # fmt: skip
            if "http_gateways" in figures:
                rate = figures["http_gateways"]["readings_per_second"]
                ratio = figures["ratio_http_gateways_to_direct_own_devices"]
                rows.append(("the same from 8 gateways, each with its own devices (HTTPS/direct of the same)",
                             f"{rate:,.0f}/s, ratio {ratio}", rate >= least_rate and ratio >= least_ratio))  # fmt: skip
    trigger = results.get("rule_trigger")
    if trigger:
        ratio = trigger["100"]["ratio"]
        rows.append(("rule trigger at 100 rules ≤ 1.25x the insert without it", f"{ratio}x", ratio <= 1.25))
        if "100 mixed" in trigger:
            ratio = trigger["100 mixed"]["ratio"]
            rows.append(("rule trigger at 100 mixed rules (threshold, duration, hysteresis, no-data) ≤ 1.25x",
                         f"{ratio}x", ratio <= 1.25))  # fmt: skip
    no_data = results.get("no_data_cycle")
    if no_data:
        seconds = no_data["cycle_seconds"]
        rows.append((f"no-data evaluation of {no_data['devices']:,} devices x 3 metrics ≤ 1 s",
                     f"{seconds} s (first cycle {no_data['first_cycle_seconds']} s)", seconds <= 1))  # fmt: skip
    queries = results.get("queries")
    if queries:
        for name in (name for name in queries["api"] if name.startswith("aggregate_")):
            p95 = queries["api"][name]["latency_ms"]["95"]
            rows.append((f"{name} p95 ≤ 50 ms", f"{p95} ms", p95 <= 50))
        for name in ("raw_1h", "latest", "device_list", "event_list"):
            p95 = queries["api"][name]["latency_ms"]["95"]
            rows.append((f"{name} p95 ≤ 100 ms (required: ≤ 500 ms)", f"{p95} ms", p95 <= 100))
    soak = results.get("soak")
    if soak:
        check = soak["check"]
        rows.append(("soak: every acknowledged reading stored, occurrences = breaches",
                     f"{check['acknowledged']:,} acknowledged, {check['acknowledged_missing_from_database']} missing, "
                     f"{check['occurrence_count_added']} occurrences for {check['stored_breaching_readings']} "
                     "stored breaches", check["passed"]))  # fmt: skip
    return rows


def write(results, directory, *, suffix=""):
    """Writes ``<UTC date>-<short sha><suffix>.json`` and ``.md`` into ``directory``; returns the Markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC):%Y-%m-%d}-{results['revision']['sha']}{suffix}"
    results["goals"] = [{"goal": goal, "figure": figure, "met": met} for goal, figure, met in goals(results)]
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = directory / f"{stem}.md"
    markdown.write_text(render(results))
    return markdown


def _latency(figures, *keys):
    return " / ".join(f"{figures['latency_ms'][key]}" for key in keys)


def render(results):
    m = results["machine"]
    lines = [
        f"# Benchmark results: {results['plan']} run of {results['revision']['sha']}"
        f"{' (uncommitted changes)' if results['revision']['dirty'] else ''}",
        "",
        f"{results['started']} UTC, {results['seconds']:.0f} s. Generated by `python -m bench {results['plan']}`; "
        "figures explained in docs/performance.md."
        + (
            " Measured with uncommitted changes in the work tree: "
            + ", ".join(f"`{path}`" for path in results["revision"]["uncommitted_changes"])
            + "."
            if results["revision"]["dirty"]
            else ""
        ),
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Linux {m['kernel']}, load average at "
        f"start {m['load_average_at_start']}, at end {results.get('load_average_at_end')}. PostgreSQL "
        f"{m['postgresql']} (shared_buffers {m['postgresql_settings']['shared_buffers']}, synchronous_commit "
        f"{m['postgresql_settings']['synchronous_commit']}, fsync {m['postgresql_settings']['fsync']}), TimescaleDB "
        f"{m['timescaledb']} ({m['timescaledb_edition']} edition). Python {m['python']}, Django {m['django']}, "
        + ", ".join(
            f"{name} {server['version']} {server['workers']} workers x {server['threads']} threads"
            for name, server in m["app_servers"].items()
        )
        + f", nginx {m['nginx']}, {m['wrk']}.",
        "",
        "## Goals",
        "",
        "| goal | figure | met |",
        "|---|---|---|",
        *(f"| {row['goal']} | {row['figure']} | {'yes' if row['met'] else '**no**'} |" for row in results["goals"]),
    ]
    compared = results.get("serving_stack")
    if compared:
        lines += _render_comparison(
            compared, "(0) The app servers compared, each behind nginx on the project's configuration",
            compared["servers"],
        )  # fmt: skip
    variants = results.get("proxy_settings")
    if variants:
        lines += _render_comparison(
            variants, "The project's nginx configuration against variants, in front of the same app server",
            {"project": "docker/nginx/templates/iothub.conf.template as it is", **variants["variants"]},
        )  # fmt: skip
    single = results.get("single_ingest")
    if single:
        lines += [
            "",
            f"## (1) Single-reading ingest over HTTPS (nginx → {DEFAULT})",
            "",
            "| run | connections | target rate | requests/s | errors | p50 / p90 / p99 / max ms | wrk CPU % |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, label in (
            ("trivial_max", "trivial endpoint (health), unpaced"),
            ("ingest_max", "ingest, unpaced"),
            ("trivial_nominal", "trivial endpoint at nominal"),
            ("ingest_nominal", "ingest at nominal (100/s)"),
            ("trivial_ten_x", "trivial endpoint at 10x"),
            ("ingest_ten_x", "ingest at 10x (1,000/s)"),
        ):
            f = single[key]
            lines.append(
                f"| {label} | {f['connections']} | {f.get('target_rate') or '-'} | {f['requests_per_second']:,.0f} | "
                f"{f['errors']} | {_latency(f, '50', '90', '99', 'max')} | {f['generator_cpu_percent_of_one_core']} |"
            )
        rounds = ", ".join(
            f"{r['ingest']['requests_per_second']:,.0f} / {r['trivial']['requests_per_second']:,.0f} ({r['ratio']})"
            for r in single["max_rounds"]
        )
        lines += [
            "",
            f"Unpaced rounds, ingest / trivial requests/s (ratio), in order: {rounds}; the table shows the round with "
            "the median ingest rate.",
            "",
            "Ratio ingest / trivial (unpaced throughput, median of the rounds): "
            f"**{single['ratio_ingest_to_trivial']}**. "
            f"p99 ingest / trivial: {single['p99_ratio_nominal']} at nominal, {single['p99_ratio_ten_x']} at 10x. "
            f"Paced runs sent {single['ingest_nominal']['late_requests']} (nominal) and "
            f"{single['ingest_ten_x']['late_requests']} (10x) requests more than 10 ms behind schedule.",
        ]
    batches = results.get("batch_ingest")
    if batches:
        lines += [
            "",
            "## (2) Batch ingest: HTTPS vs the service's INSERT run directly with psycopg2",
            "",
            "| batch | HTTPS readings/s | errors | p50 / p99 ms | direct readings/s | ratio HTTPS / direct |",
            "|---|---|---|---|---|---|",
        ]
        sizes = [key for key in batches if key.isdigit()]
        for size in sizes:
            f = batches[size]
            lines.append(
                f"| {size} | {f['http']['readings_per_second']:,.0f} | {f['http']['errors']} | "
                f"{_latency(f['http'], '50', '99')} | {f['direct']['readings_per_second']:,.0f} | "
                f"**{f['ratio_http_to_direct']}** |"
            )
        if all("http_gateways" in batches[size] for size in sizes):
            lines += [
                "",
                "From gateways: the same batches from 8 gateways serving an eighth of the fleet each (over HTTPS, "
                "load.lua's BENCH_GATEWAYS; directly, one connection per gateway). Above, every batch holds "
                "readings of the whole fleet, so concurrent statements wait for each other's row locks on the "
                "devices' rate counters until they commit.",
                "",
                "| batch | HTTPS readings/s | errors | p50 / p99 ms | direct readings/s | ratio HTTPS / direct "
                "| direct: gateways / whole fleet |",
                "|---|---|---|---|---|---|---|",
            ]
            for size in sizes:
                f = batches[size]
                http, own = f["http_gateways"], f["direct_own_devices"]
                lines.append(
                    f"| {size} | {http['readings_per_second']:,.0f} | {http['errors']} | "
                    f"{_latency(http, '50', '99')} | {own['readings_per_second']:,.0f} | "
                    f"**{f['ratio_http_gateways_to_direct_own_devices']}** | {f['ratio_own_devices_to_direct']} |"
                )
    trigger = results.get("rule_trigger")
    if trigger:
        lines += [
            "",
            f"## (3) Rule-trigger overhead: batches of {trigger['batch']:,} inserted in SQL, "
            f"{trigger['breach_share']:.0%} of readings breaching",
            "",
            "| enabled rules | trigger ignored readings/s | trigger on readings/s | ratio (median of rounds) |",
            "|---|---|---|---|",
        ]
        for count in ("0", "10", "100", "100 mixed"):
            f = trigger.get(count)
            if f is None:
                continue
            lines.append(
                f"| {count} | {f['ignored_readings_per_second']:,.0f} | {f['trigger_readings_per_second']:,.0f} | "
                f"**{f['ratio']}x** {f['round_ratios']} |"
            )
        if "100 mixed" in trigger:
            lines += [
                "",
                "100 mixed: of every 10 rules one duration, two hysteresis (one opening and resolving an event per "
                "breach), two no-data (one silent on every device of its types), five threshold.",
            ]
    no_data = results.get("no_data_cycle")
    if no_data:
        lines += [
            "",
            f"## (3b) No-data rules: one evaluation of {no_data['devices']:,} devices x 3 metrics "
            f"({no_data['pairs']:,} pairs, {no_data['readings']:,} readings in the last 10 minutes)",
            "",
            f"First cycle (opens {no_data['first_cycle_events']} events): {no_data['first_cycle_seconds']} s; "
            f"the next ones: **{no_data['cycle_seconds']} s** (median of {no_data['cycle_round_seconds']}).",
        ]
    queries = results.get("queries")
    if queries:
        d = queries["dataset"]
        lines += [
            "",
            f"## (4) Queries: {d['devices']} devices x {d['days']} days x 1 reading/min (scale {d['scale']}, "
            f"{d['readings']:,} readings, loaded in {d['load_seconds']} s, {d['events']:,} events)",
            "",
            f"Aggregate refresh: {d['aggregate_refresh']}.",
            "",
            "| API call (one client, sequential) | requests | p50 / p95 / p99 ms |",
            "|---|---|---|",
        ]
        for name, f in queries["api"].items():
            lines.append(f"| {name} | {f['requests']} | {_latency(f, '50', '95', '99')} |")
        lines += [
            "",
            "| aggregate in SQL | source | view p50 / p95 ms | from raw p50 / p95 ms | ratio raw / aggregate |",
            "|---|---|---|---|---|",
        ]
        for name, f in queries["sql"].items():
            lines.append(
                f"| {name} | {f['source']} | {f['view']['p50']} / {f['view']['p95']} | {f['raw']['p50']} / "
                f"{f['raw']['p95']} | **{f['ratio_raw_to_aggregate']}** |"
            )
    export = results.get("export")
    if export:
        lines += [
            "",
            f"## (7) CSV export: {export['rows']:,} readings of one device ({export['megabytes']} MB)",
            "",
            f"**{export['rows_per_second']:,} rows/s** ({export['seconds']} s, first byte after "
            f"{export['first_byte_seconds']} s) through nginx, one client reading to the end; the app server worker's "
            f"RSS {export['worker_rss_before_mb']} MB before, peak **{export['worker_peak_rss_mb']} MB** during "
            f"(largest worker), {export['app_server_cpu_seconds']} s of app server CPU.",
        ]
    memory_phases = [(key, results.get(key, {}).get("processes")) for key in ("single_ingest", "batch_ingest", "soak")]
    memory_phases = [(key, figures) for key, figures in memory_phases if figures]
    if memory_phases:
        lines += [
            "",
            "## (5) Memory and CPU of the stack during the runs",
            "",
            "| phase | process group | processes | peak RSS sum MB | peak PSS sum MB | largest process RSS MB "
            "| CPU % of one core |",
            "|---|---|---|---|---|---|---|",
        ]
        for phase, groups in memory_phases:
            for group, f in groups.items():
                lines.append(
                    f"| {phase} | {group} | {f['processes']} | {f['rss_sum_mb']} | {f['pss_sum_mb']} | "
                    f"{f['largest_child_rss_mb']} | {f['cpu_percent_of_one_core']} |"
                )
    storage = results.get("storage")
    if storage:
        lines += [
            "",
            f"On disk: {storage['mb_per_million_readings']} MB per million readings ({storage['readings']:,} readings, "
            f"{storage['bytes'] / 1024 / 1024:,.0f} MB with indexes); compressed: "
            f"{storage['compressed_mb_per_million_readings']}.",
        ]
    soak = results.get("soak")
    if soak:
        check = soak["check"]
        lines += [
            "",
            f"## (6) Soak: {soak.get('target_rate')} readings/s for {soak['seconds']:.0f} s",
            "",
            f"{soak['requests']:,} requests, {soak['requests_per_second']:,.0f}/s, {soak['errors']} errors, "
            f"p50 / p99 / max {_latency(soak, '50', '99', 'max')} ms, {soak['late_requests']} requests more than "
            f"10 ms behind schedule. Check {'**passed**' if check['passed'] else '**FAILED**'}: "
            f"{check['acknowledged']:,} readings acknowledged with a 201, "
            f"{check['acknowledged_missing_from_database']} of them missing from the database; "
            f"{check['in_flight_at_stop']} in flight when wrk stopped; {check['stored']:,} stored; "
            f"Σ occurrence_count grew by {check['occurrence_count_added']} for "
            f"{check['breaches_acknowledged']} acknowledged breaching readings "
            f"(+{check['breaches_in_flight_at_stop']} in flight), {check['stored_breaching_readings']} stored.",
        ]
    prof = results.get("profile")
    if prof:
        lines += _render_profile(prof, f"{DEFAULT} workers during single-reading ingest")
    for size, batch_profile in results.get("batch_profile", {}).items():
        lines += _render_profile(batch_profile, f"{DEFAULT} workers during batches of {size}")
    return "\n".join(lines) + "\n"


_KINDS = {"trivial": "trivial endpoint (health)", "single": "single reading", "batch_100": "batches of 100",
          "batch_500": "batches of 500"}  # fmt: skip


def _render_comparison(compared, title, descriptions):
    """A comparison of targets (app servers, nginx variants): rates, CPU per request, ratios to the first."""
    names, kinds = compared["targets"], compared["kinds"]
    lines = [
        "",
        f"## {title}",
        "",
        "; ".join(f"**{name}**: {description}" for name, description in descriptions.items())
        + ". Unpaced runs, taking turns run by run (the order reversed every round); the median round's rate, and "
        "CPU per request over all rounds (µs: app server / nginx / PostgreSQL / wrk).",
        "",
        "| target | run | requests/s (rounds) | readings/s | errors | p50 / p99 ms | CPU µs per request |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        for name in names:
            f = compared[name][kind]
            median, cpu = f["median"], f["cpu_us_per_request"]
            rounds = " · ".join(f"{rate:,.0f}" for rate in f["rounds_requests_per_second"])
            lines.append(
                f"| {name} | {_KINDS[kind]} | {median['requests_per_second']:,.0f} ({rounds}) | "
                f"{median.get('readings_per_second', median['requests_per_second']):,.0f} | {f['errors']} | "
                f"{_latency(median, '50', '99')} | {f['cpu_us_per_request_total']:,} "
                f"({cpu['app server']:,} / {cpu['nginx']:,} / {cpu['postgresql']:,} / {cpu['wrk']:,}) |"
            )
    lines += [
        "",
        f"| target / {names[0]} | run | requests/s | CPU per request | app server CPU per request |",
        "|---|---|---|---|---|",
    ]
    for other, by_kind in compared["ratios"].items():
        for kind, ratio in by_kind.items():
            lines.append(
                f"| {other} | {_KINDS[kind]} | **{ratio['requests_per_second']}** | **{ratio['cpu_per_request']}** | "
                f"{ratio['app_server_cpu_per_request']} |"
            )
    return lines


def _render_profile(prof, title):
    if not prof.get("samples"):
        return ["", f"Profile ({title}): {prof.get('error', 'no samples')}"]
    run = prof["run"]
    rate = run.get("readings_per_second", run["requests_per_second"])
    return [
        "",
        f"## Profile: {title} (py-spy, {prof['samples']:,} samples in request handling; the run: "
        f"{run['requests_per_second']:,.0f} requests/s, {rate:,.0f} readings/s, p50 {run['latency_ms']['50']} ms)",
        "",
        "| where | share of request time |",
        "|---|---|",
        *(f"| {name} | {share} % |" for name, share in prof["categories"]),
        "",
        "Hottest frames (self time): "
        + "; ".join(f"`{frame}` {share} %" for frame, share in prof["top_self"][:8])
        + ".",
    ]
