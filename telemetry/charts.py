"""Charts of a device's aggregates as inline SVG, drawn on the server: no JavaScript, nothing fetched by the browser.

A chart shows one metric over a window: the average of each bucket as a line and its min-max range as a band. A run
of buckets without readings breaks both (a gap is not interpolated), so a chart has one line per run of consecutive
buckets with data, and as many points as buckets with data.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.utils.html import format_html, format_html_join

from telemetry.buckets import aggregate_buckets
from telemetry.selectors import telemetry_aggregate


@dataclass(frozen=True)
class ChartWindow:
    key: str  # the page's ?window=
    label: str
    span: timedelta
    # Bucket width: about 100 points a chart, from the aggregate that fits (telemetry.selectors.aggregate_source).
    interval: timedelta
    time_format: str  # the axis's labels

    @property
    def interval_label(self):
        return duration_label(self.interval)


CHART_WINDOWS = {
    window.key: window
    for window in (
        ChartWindow("1h", "1 hour", timedelta(hours=1), timedelta(minutes=1), "%H:%M"),  # telemetry_1m
        ChartWindow("24h", "24 hours", timedelta(hours=24), timedelta(minutes=15), "%H:%M"),  # telemetry_1m
        ChartWindow("7d", "7 days", timedelta(days=7), timedelta(hours=1), "%b %d"),  # telemetry_1h
        ChartWindow("30d", "30 days", timedelta(days=30), timedelta(hours=6), "%b %d"),  # telemetry_1h
        ChartWindow("90d", "90 days", timedelta(days=90), timedelta(days=1), "%b %d"),  # telemetry_1d
    )
}
DEFAULT_CHART_WINDOW = "24h"

WIDTH, HEIGHT = 720, 150
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 8, 20  # margins: the value axis's labels on the left, the time axis's below
LINE_COLOUR, BAND_COLOUR, GRID_COLOUR, TEXT_COLOUR = "#2563eb", "#bfdbfe", "#d1d5db", "#4b5563"


@dataclass(frozen=True)
class MetricSeries:
    metric: str
    # (bucket start, min, avg, max) of the buckets with readings, oldest first.
    buckets: list


def device_series(*, device, window, now):
    """``(first, stop, {metric: MetricSeries})``: the device's numeric metrics in buckets of ``window.interval``
    covering the ``window.span`` before ``now`` (the newest bucket holds ``now``), from the aggregates."""
    first, stop, _ = aggregate_buckets(start=now - window.span, end=now, interval=window.interval)
    series = {}
    for row in telemetry_aggregate(device=device, start=first, end=stop, interval=window.interval):
        series.setdefault(row["metric"], MetricSeries(row["metric"], [])).buckets.append(
            (row["bucket"], row["min"], row["avg"], row["max"])
        )
    return first, stop, series


def _runs(buckets, interval):
    """The buckets split where a bucket without readings lies between two with."""
    run = []
    for bucket in buckets:
        if run and bucket[0] - run[-1][0] != interval:
            yield run
            run = []
        run.append(bucket)
    if run:
        yield run


def _number(value):
    return f"{value:.4g}"


def metric_chart(*, series, first, stop, window, unit=""):
    """The SVG of one metric's series over ``[first, stop)``."""
    low = min(bucket[1] for bucket in series.buckets)
    high = max(bucket[3] for bucket in series.buckets)
    if low == high:  # a flat series sits in the middle
        low, high = low - 1, high + 1
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = (stop - first).total_seconds()
    half_bucket = window.interval.total_seconds() / 2

    def x(bucket):  # a bucket's point sits in its middle
        return LEFT + plot_width * ((bucket - first).total_seconds() + half_bucket) / span

    def y(value):
        return TOP + plot_height * (high - value) / (high - low)

    def points(pairs):
        return " ".join(f"{px:.1f},{py:.1f}" for px, py in pairs)

    shapes = []
    for run in _runs(series.buckets, window.interval):
        band = [(x(b[0]), y(b[3])) for b in run] + [(x(b[0]), y(b[1])) for b in reversed(run)]
        shapes.append(format_html('<polygon class="band" points="{}" fill="{}"/>', points(band), BAND_COLOUR))
        line = [(x(b[0]), y(b[2])) for b in run]
        shapes.append(
            format_html(
                '<polyline class="avg" points="{}" fill="none" stroke="{}" stroke-width="1.5"/>',
                points(line),
                LINE_COLOUR,
            )
        )
        if len(run) == 1:  # a lone bucket: a dot, since a one-point line draws nothing
            shapes.append(
                format_html('<circle cx="{}" cy="{}" r="2" fill="{}"/>', *points(line).split(","), LINE_COLOUR)
            )

    suffix = f" {unit}" if unit else ""
    values = [high, (high + low) / 2, low]
    times = [(first, "start", window.time_format), (first + (stop - first) / 2, "middle", window.time_format)]
    times.append((stop, "end", f"{window.time_format} UTC"))
    return format_html(
        '<svg class="iothub-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'role="img" aria-label="{label}" data-metric="{metric}" data-points="{count}">'
        "<title>{label}</title>"
        '<g stroke="{grid}" stroke-width="1">{grid_lines}</g>'
        "{shapes}"
        '<g fill="{text}" font-size="11" font-family="sans-serif">{value_texts}{time_texts}</g>'
        "</svg>",
        w=WIDTH,
        h=HEIGHT,
        label=f"{series.metric}: average, min and max per {window.interval_label} over {window.label}",
        metric=series.metric,
        count=len(series.buckets),
        grid=GRID_COLOUR,
        grid_lines=format_html_join(
            "",
            '<line x1="{}" x2="{}" y1="{}" y2="{}"/>',
            ((LEFT, WIDTH - RIGHT, f"{y(value):.1f}", f"{y(value):.1f}") for value in values),
        ),
        shapes=format_html_join("", "{}", ((shape,) for shape in shapes)),
        text=TEXT_COLOUR,
        value_texts=format_html_join(
            "",
            '<text x="{}" y="{}" text-anchor="end">{}</text>',
            ((LEFT - 4, f"{y(value) + 4:.1f}", f"{_number(value)}{suffix}") for value in values),
        ),
        time_texts=format_html_join(
            "",
            '<text x="{}" y="{}" text-anchor="{}">{}</text>',
            (
                (
                    f"{LEFT + plot_width * (moment - first).total_seconds() / span:.1f}",
                    HEIGHT - 5,
                    anchor,
                    f"{moment:{fmt}}",
                )
                for moment, anchor, fmt in times
            ),
        ),
    )


def duration_label(interval):
    """``interval`` as a person says it: "minute", "15 minutes", "6 hours", "90 s"."""
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}" if count != 1 else unit
    return f"{seconds} s"
