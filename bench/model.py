"""The capacity model's check: the single-process fan-out row of a run predicts the scale-out rows.

From one ``liveblog serve`` with R readers (the ``fanout`` scenario's liveblog row) come three
per-unit costs: server CPU per connecting reader (from before the first connect to the end of the
settle), server CPU per delivered event (from then until every reader holds every update), and RSS per
connected reader. Applied to the scale-out run (N processes, the same updates, its readers split
evenly) they predict its summed CPU and RSS; the table puts prediction and measurement side by side.
"""

from __future__ import annotations

import os

from bench.report import Row

REFERENCE = ("fan-out", "liveblog")  # (scenario, server) of the row the model is built from


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f} MB"


def _ratio(measured: float, predicted: float) -> str:
    return f"{measured / predicted:.2f}" if predicted > 0 else "–"


def _complete(row: Row) -> bool:
    return (row.cpu is not None and row.cpu_connect is not None and row.rss_base is not None
            and row.rss_total is not None and row.readers > 0 and row.delivered > 0)


def check(rows: list[Row]) -> str:
    """A Markdown section comparing each scale-out row with the prediction from the reference row, or
    a sentence saying what is missing, or "" when the run has no scale-out row."""
    scaled = [row for row in rows if row.processes > 1 and _complete(row)]
    if not scaled:
        return ""
    reference = next((row for row in rows if (row.scenario, row.target) == REFERENCE and row.processes == 1
                      and _complete(row)), None)
    if reference is None:
        return ("Capacity model check: needs the single-process fan-out row of the same run "
                "(add `--scenario fanout --target liveblog`).")
    return "\n\n".join(_one(reference, row) for row in scaled)


def _one(ref: Row, row: Row) -> str:
    assert ref.cpu is not None and ref.cpu_connect is not None and ref.rss_base is not None
    assert ref.rss_total is not None
    assert row.cpu is not None and row.cpu_connect is not None and row.rss_base is not None
    assert row.rss_total is not None
    n = row.processes
    per_connect = ref.cpu_connect / ref.readers
    per_event = (ref.cpu - ref.cpu_connect) / ref.delivered
    per_reader = (ref.rss_total - ref.rss_base) / ref.readers
    baseline = ref.rss_base
    lines = [
        f"Capacity model check: {n} processes, predicted from the 1-process fan-out row of this run "
        f"({ref.readers:,} readers, {ref.delivered:,} events)",
        "",
        "| quantity | per unit (1 process) | predicted | measured, summed over the processes | measured / predicted |",
        "| --- | --- | --- | --- | --- |",
    ]

    def line(name: str, unit: str, predicted: float, measured: float, fmt: str) -> None:
        shown = (f"{predicted:.1f} s", f"{measured:.1f} s") if fmt == "s" else (_mb(predicted), _mb(measured))
        lines.append(f"| {name} | {unit} | {shown[0]} | {shown[1]} | {_ratio(measured, predicted)} |")

    connect_p, connect_m = row.readers * per_connect, row.cpu_connect
    events_p, events_m = row.delivered * per_event, row.cpu - row.cpu_connect
    line(f"CPU while {row.readers:,} readers connect", f"{per_connect * 1e6:,.0f} µs per reader",
         connect_p, connect_m, "s")
    line(f"CPU while {row.delivered:,} events are delivered", f"{per_event * 1e6:,.1f} µs per event",
         events_p, events_m, "s")
    line("CPU, both", "", connect_p + events_p, connect_m + events_m, "s")
    line("RSS growth with the readers", f"{per_reader / 1024:.1f} KB per reader", row.readers * per_reader,
         row.rss_total - row.rss_base, "mb")
    line("RSS, total", f"{_mb(baseline)} per process before readers", n * baseline + row.readers * per_reader,
         row.rss_total, "mb")
    if ref.redis is not None and row.redis is not None:
        one, many = ref.redis.per_change(), row.redis.per_change()
        lines += ["", f"Redis commands per change: 1 process {sum(one.values()):.1f} "
                      f"(XREAD {one.get('xread', 0):.1f}), {n} processes {sum(many.values()):.1f} "
                      f"(XREAD {many.get('xread', 0):.1f}); Redis CPU per change {ref.redis.usec_per_change():.0f} "
                      f"and {row.redis.usec_per_change():.0f} µs."]
    lines += ["", f"What the prediction ignores: each process's own per-change work (it reads every change "
                  f"from Redis and encodes it once, whatever its readers: {n}× in the scale-out run, spread "
                  f"over {ref.readers:,} readers in the reference); time-proportional work (heartbeats, "
                  f"reader counts, the empty XREAD timeouts) counted into the per-event figure over the "
                  f"reference run's length; that {row.readers // n:,} readers per process may cost "
                  f"differently per reader than {ref.readers:,}; and the machine: {n} web processes and "
                  f"{n} load generator processes share its {os.cpu_count()} cores (CPU seconds compare, "
                  f"latencies do not). The total RSS adds the reference's baseline per process; the growth "
                  f"line does not."]
    return "\n".join(lines)
