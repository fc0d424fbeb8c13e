"""python -m bench {full,smoke,soak}: starts the stack, measures, stops everything and writes the results.

full   every measurement of issue 5 (≤ 10 minutes); results in bench/results/<UTC date>-<short sha>.{md,json}
smoke  every measurement path once at a tiny scale (< 60 s), so the harness never rots; results in
       bench/results/smoke/ (git-ignored: they are not results)
soak   10x nominal load for --duration, then the end-to-end check; bench/results/<date>-<sha>-soak.{md,json}
compare  only the app servers compared (full's first phase, ≈ 3 minutes); bench/results/<date>-<sha>-compare.*
proxy  the project's nginx configuration against variants (keep-alive, body buffering; ≈ 4 minutes);
       bench/results/<date>-<sha>-proxy.*
"""

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# The measurements of a full run, in order.
PHASES = (
    "serving_stack",
    "single_ingest",
    "profile",
    "batch_ingest",
    "batch_profile",
    "rule_trigger",
    "no_data_cycle",
    "soak",
    "queries",
    "export",
    "storage",
)
# Beyond this many devices the query dataset holds one day per device unless --days says otherwise: 1,000 devices x
# 90 days would be 130 M readings (28 GB), far beyond two cores and a test machine's disk.
HISTORY_CAP_DEVICES = 100


def duration(text):
    """Seconds from ``90``, ``90s``, ``15m`` or ``2h``."""
    match = re.fullmatch(r"([0-9]+)([smh]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError("a duration such as 90, 90s, 15m or 2h")
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def main():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["full", "smoke", "soak", "compare", "proxy"])
    parser.add_argument("--scale", type=float, help="query dataset size: x 100 devices (full default 0.05)")
    parser.add_argument(
        "--days",
        type=int,
        help=f"query dataset history per device (default 90; 1 beyond {HISTORY_CAP_DEVICES} devices, to fit 2 cores "
        "and the disk)",
    )
    parser.add_argument(
        "--phases", type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"only these measurements, comma-separated ({', '.join(PHASES)}); default all",
    )  # fmt: skip
    parser.add_argument("--duration", type=duration, default=600, help="soak duration (default 10m)")
    parser.add_argument("--output", type=Path, help="results directory")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from bench.plans import PLANS
    from bench.servers import DEFAULT, SERVERS
    from bench.stack import Stack, log

    plan = PLANS["full" if args.mode in ("compare", "proxy") else args.mode]
    if args.scale is not None:
        plan = plan.__class__(**{**plan.__dict__, "scale": args.scale})
    days = args.days or (1 if round(100 * plan.scale) > HISTORY_CAP_DEVICES else None)
    if days:
        plan = plan.__class__(**{**plan.__dict__, "days": days})
    unknown = set(args.phases or ()) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}: choose among {', '.join(PHASES)}")
    output = args.output or (RESULTS / "smoke" if args.mode == "smoke" else RESULTS)
    began = time.monotonic()
    started = datetime.now(UTC)

    # Queries wait in select(), so Ctrl-C or SIGTERM stops a run even in the middle of a long statement.
    import psycopg2.extensions
    import psycopg2.extras

    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)

    others = [] if args.mode in ("soak", "proxy") else [name for name in SERVERS if name != DEFAULT]
    server_names = [DEFAULT, *others]
    with Stack(durable=plan.durable, server_names=server_names) as stack:
        os.environ.update(stack.env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iothub.settings")
        import django

        django.setup()
        from bench import report
        from bench.measure import Bench

        results = {
            "plan": args.mode,
            "plan_settings": plan.__dict__,
            "started": f"{started:%Y-%m-%d %H:%M}",
            "revision": report.git_revision(),
            "machine": report.machine(stack),
        }
        log("the fleet: 100 devices, 5 device types, 1 rule")
        bench = Bench(stack, plan, stack.dir / "work")
        if args.mode == "soak":
            phases = [("soak", lambda: bench.soak(args.duration))]
        elif args.mode == "compare":
            phases = [("serving_stack", bench.serving_stack)]
        elif args.mode == "proxy":
            phases = [("proxy_settings", bench.proxy_settings)]
        else:
            measures = {
                "serving_stack": bench.serving_stack,
                "single_ingest": bench.single_ingest,
                "profile": bench.profile_ingest,
                "batch_ingest": bench.batch_ingest,
                "batch_profile": bench.profile_batches,
                "rule_trigger": bench.trigger_overhead,
                "no_data_cycle": bench.no_data_cycle,
                "soak": lambda: bench.soak(plan.soak_seconds),
                "queries": bench.queries,
                "export": bench.export,
                "storage": bench.storage,
            }
            phases = [(name, measures[name]) for name in PHASES if name in (args.phases or PHASES)]
        results["phase_seconds"] = {}
        for name, measure in phases:
            phase_began = time.monotonic()
            results[name] = measure()
            results["phase_seconds"][name] = round(time.monotonic() - phase_began, 1)
        results["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        results["seconds"] = round(time.monotonic() - began, 1)
        # Runs at several scales of one revision keep a file each.
        scaled = plan.scale != PLANS[args.mode].scale
        suffix = "" if args.mode in ("full", "smoke") else f"-{args.mode}"
        markdown = report.write(results, output, suffix=f"{suffix}-scale{plan.scale:g}" if scaled else suffix)
        for profile_raw in (stack.dir / "work").glob("py-spy-*.txt"):
            kind = profile_raw.stem.removeprefix("py-spy-").replace("ingest", "")
            (markdown.parent / f"{markdown.stem}-py-spy{'-' if kind else ''}{kind}.txt").write_bytes(
                profile_raw.read_bytes()
            )
    log(f"results: {markdown} ({time.monotonic() - began:.0f} s)")
    print(markdown.read_text())
    failed = [goal for goal in results["goals"] if goal["goal"].startswith("soak") and not goal["met"]]
    if failed:
        sys.exit("the soak check failed: " + failed[0]["figure"])


if __name__ == "__main__":
    main()
