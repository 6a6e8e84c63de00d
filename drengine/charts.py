"""Inline SVG charts for the self-contained HTML pages: the step timeline of one run (one bar
per step from its start to its end, the gate's wait drawn inside it, the outage above) and the
trend of a figure across drills (one point per drill, regressions marked, the objective drawn).

Pure functions from records to SVG text; every label is escaped; no script, no network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from drengine.runrecord import RunRecord

WIDTH = 960
LABEL = 210
RIGHT = 150
ROW = 26
BAR = 14
TOP = 28
AXIS = 34


def nice_step(span: float, ticks: int = 6) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving about `ticks` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * power:
            return m * power
    return 10.0 * power


def seconds_label(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f} s"
    if abs(value) >= 1:
        return f"{value:.1f} s".replace(".0 s", " s")
    if value == 0:
        return "0 s"
    return f"{value * 1000:.0f} ms"


@dataclass(frozen=True)
class _Scale:
    t0: float
    t1: float
    x0: float = LABEL
    x1: float = WIDTH - RIGHT

    def x(self, t: float) -> float:
        span = max(self.t1 - self.t0, 1e-9)
        return round(self.x0 + (t - self.t0) / span * (self.x1 - self.x0), 2)


def timeline_svg(record: RunRecord) -> str:
    """One row per step: its bar from start to end, the gate's wait hatched inside it. For a
    drill, a first row shows the outage (fault to the first acknowledged write), and time is
    counted from the fault; otherwise from the start of the run."""
    steps = record.steps
    fault_at = record.fault.at if record.fault else None
    recovered = record.recovered_at
    times = [s.start for s in steps] + [s.end for s in steps]
    times += [t for t in (fault_at, recovered) if t is not None]
    if not times:
        return '<p class="empty">No step was run.</p>'
    origin = fault_at if fault_at is not None else (record.started or min(times))
    scale = _Scale(min(times), max(max(times), min(times) + 1e-3))
    rows = (1 if fault_at is not None else 0) + len(steps)
    height = TOP + rows * ROW + AXIS
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Step timeline">',
           '<defs><pattern id="wait" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
           '<rect width="6" height="6" fill="#f3c969"/><line x1="0" y1="0" x2="0" y2="6" stroke="#b07d12" stroke-width="3"/>'
           '</pattern></defs>']
    out += _axis(scale, origin, TOP + rows * ROW, "since the fault" if fault_at is not None else "since the start")
    row = 0
    if fault_at is not None:
        end = recovered if recovered is not None else scale.t1
        y = TOP + row * ROW
        words = (f"writes refused for {seconds_label(end - fault_at)} (RTO)" if recovered is not None
                 else "writes never acknowledged again")
        out.append(_label(y, "outage", "outage-label"))
        out.append(_rect(scale.x(fault_at), y, scale.x(end) - scale.x(fault_at), "bar outage",
                         f"outage: fault at 0 s, {words}"))
        out.append(_value(scale.x(end) + 6, y, words))
        row += 1
    for span in steps:
        y = TOP + row * ROW
        kind = {"ok": "ok", "skipped": "skipped", "FAILED": "failed"}.get(span.status, "unfinished")
        start, end = span.start - origin, span.end - origin
        tip = (f"{span.step}: {span.status}, {seconds_label(span.work_seconds)} of work "
               f"(from {seconds_label(start)} to {seconds_label(end)})"
               + (f", gate waited {seconds_label(span.gate_seconds)} for {span.gate_answer or 'an answer'}"
                  if span.gate_asked is not None else ""))
        out.append(f'<g class="step" data-step="{escape(span.step)}">')
        out.append(_label(y, span.step, "step-label"))
        # The step's own attempts only: its gate's wait and a stop until resume are not its time.
        for a, b in span.work or [(span.start, span.end)]:
            out.append(_rect(scale.x(a), y, scale.x(b) - scale.x(a), f"bar step {kind}", tip))
        for asked, answered in span.all_gate_waits:
            out.append(_rect(scale.x(asked), y + 2, scale.x(answered) - scale.x(asked), "gate-wait",
                             f"gate of {span.step} ({span.gate_level}) waited {seconds_label(answered - asked)}",
                             height=BAR - 4, fill="url(#wait)"))
        words = seconds_label(span.work_seconds) + (f" · gate {seconds_label(span.gate_seconds)}" if span.gate_asked else "")
        out.append(_value(scale.x(span.end) + 6, y, words))
        out.append("</g>")
        row += 1
    for stopped, resumed in record.interruptions:
        # A stop (Ctrl-C, a crash) until `run --resume`: a gap across every row, with its length.
        out.append(_rect(scale.x(stopped), TOP - 4, scale.x(resumed) - scale.x(stopped), "interrupted",
                         f"run stopped for {seconds_label(resumed - stopped)} until resumed",
                         height=rows * ROW, fill="#eeeeee"))
        out.append(f'<text class="marker-label" x="{scale.x(stopped) + 3}" y="{TOP - 16}">'
                   f'stopped {escape(seconds_label(resumed - stopped))}</text>')
    for t, cls, text in ((fault_at, "fault-line", "fault"), (recovered, "recovered-line", "writes acknowledged again")):
        if t is None:
            continue
        x = scale.x(t)
        out.append(f'<line class="{cls}" x1="{x}" y1="{TOP - 14}" x2="{x}" y2="{TOP + rows * ROW}"/>')
        anchor = "start" if cls == "fault-line" else "end"
        out.append(f'<text class="marker-label" x="{x + (3 if anchor == "start" else -3)}" y="{TOP - 16}" '
                   f'text-anchor="{anchor}">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _axis(scale: _Scale, origin: float, y: float, caption: str) -> list[str]:
    lo, hi = scale.t0 - origin, scale.t1 - origin
    step = nice_step(hi - lo)
    out = [f'<line class="axis" x1="{scale.x0}" y1="{y + 2}" x2="{scale.x1}" y2="{y + 2}"/>']
    tick = math.ceil(lo / step) * step
    while tick <= hi + 1e-9:
        x = scale.x(origin + tick)
        out.append(f'<line class="tick" x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{y + 6}"/>')
        out.append(f'<text class="tick-label" x="{x}" y="{y + 18}" text-anchor="middle">{escape(seconds_label(round(tick, 9)))}</text>')
        tick += step
    out.append(f'<text class="axis-caption" x="{scale.x1}" y="{y + 32}" text-anchor="end">{escape(caption)}</text>')
    return out


def _label(y: float, text: str, cls: str) -> str:
    short = text if len(text) <= 28 else text[:27] + "…"
    return f'<text class="{cls}" x="{LABEL - 8}" y="{y + BAR - 2}" text-anchor="end">{escape(short)}</text>'


def _rect(x: float, y: float, width: float, cls: str, tip: str, height: int = BAR, fill: str | None = None) -> str:
    paint = f' fill="{fill}"' if fill else ""
    return (f'<rect class="{cls}" x="{x}" y="{y}" width="{max(width, 2.0):.2f}" height="{height}" rx="2"{paint}>'
            f"<title>{escape(tip)}</title></rect>")


def _value(x: float, y: float, text: str) -> str:
    return f'<text class="bar-value" x="{x}" y="{y + BAR - 2}">{escape(text)}</text>'


# -- trends across drills ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    label: str  # when, for the axis and the tooltip
    value: float | None  # None: not measured (never recovered)
    regression: bool
    passed: bool
    tip: str


def trend_svg(points: list[Point], figure: str, unit: str, objective: float | None, cls: str) -> str:
    """One point per drill, in order, joined by a line; a dashed line at the objective."""
    width, height, left, right, top, bottom = 460, 220, 56, 16, 18, 42
    values = [p.value for p in points if p.value is not None]
    hi = max(values) if values else (objective or 1.0)
    # An objective far above every drill would squash the points flat: then it is named, not drawn.
    objective_drawn = objective is not None and objective <= max(hi, 1e-9) * 2.5
    if objective_drawn and objective is not None:
        hi = max(hi, objective)
    hi = hi * 1.15 if hi > 0 else 1.0
    step = nice_step(hi, 4)
    hi = math.ceil(hi / step) * step

    def x(i: int) -> float:
        return round(left + (i + 0.5) * (width - left - right) / max(len(points), 1), 2)

    def y(v: float) -> float:
        return round(top + (1 - v / hi) * (height - top - bottom), 2)

    fmt = seconds_label if unit == "s" else (lambda v: f"{v:g}")
    out = [f'<svg class="trend {escape(cls)}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(figure)} over the last drills">']
    tick = 0.0
    while tick <= hi + 1e-9:
        out.append(f'<line class="grid" x1="{left}" y1="{y(tick)}" x2="{width - right}" y2="{y(tick)}"/>')
        out.append(f'<text class="tick-label" x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{escape(fmt(tick))}</text>')
        tick += step
    if objective is not None and not objective_drawn:
        out.append(f'<text class="objective-label" x="{width - right}" y="{top - 4}" text-anchor="end">'
                   f'objective {escape(fmt(objective))}, far above every drill</text>')
    if objective is not None and objective_drawn:
        out.append(f'<line class="objective-line" x1="{left}" y1="{y(objective)}" x2="{width - right}" y2="{y(objective)}">'
                   f'<title>objective: {escape(fmt(objective))}</title></line>')
        out.append(f'<text class="objective-label" x="{width - right}" y="{y(objective) - 4}" text-anchor="end">'
                   f'objective {escape(fmt(objective))}</text>')
    known = [(i, p) for i, p in enumerate(points) if p.value is not None]
    if len(known) > 1:
        path = " ".join(f"{x(i)},{y(p.value)}" for i, p in known if p.value is not None)
        out.append(f'<polyline class="trend-line" points="{path}"/>')
    for i, p in enumerate(points):
        state = ("regression" if p.regression else "") + ("" if p.passed else " failed")
        if p.value is None:
            out.append(f'<text class="point {escape(cls)} missing" x="{x(i)}" y="{y(hi) + 10}" text-anchor="middle">'
                       f'×<title>{escape(p.tip)}</title></text>')
            continue
        out.append(f'<circle class="point {escape(cls)} {state.strip()}" cx="{x(i)}" cy="{y(p.value)}" r="5">'
                   f'<title>{escape(p.tip)}</title></circle>')
    every = max(1, math.ceil(len(points) / 8))  # at most eight labels under the axis
    for i, p in enumerate(points):
        if i % every and i != len(points) - 1:
            continue
        out.append(f'<text class="x-label" x="{x(i)}" y="{height - bottom + 16}" text-anchor="middle">{escape(p.label)}</text>')
    out.append(f'<text class="axis-caption" x="{left}" y="{height - 6}">{escape(figure)}, one point per drill, oldest first</text>')
    out.append("</svg>")
    return "\n".join(out)
