"""The step funnel as a picture (PNG or SVG), for a manager who would rather look than read.

One panel per sequence with activity, its steps top to bottom in file order; each
step has two bars: the touches that reached the lead (emails and SMS sent, calls
and tasks done) and the replies credited to them (see `cadence.manage.report` for the
attribution rule), with the reply rate written beside them. It draws from the
report's JSON shape, so the picture shows exactly the numbers `cadence report
--json` prints.

matplotlib is imported only here and only when a chart is asked for, and the
figure is built without pyplot (no global state). SVG keeps its text as `<text>`
elements (searchable, and checkable by a test) and carries no creation date, so
the same report draws the same file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMATS = ("png", "svg")
REACHED_COLOR = "#4C78A8"
REPLIED_COLOR = "#F58518"


def chart_format(path: Path) -> str:
    """The image format a file name asks for; only .png and .svg are drawn."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: the chart is drawn as .png or .svg, not {path.suffix or 'no extension'}")
    return fmt


def reached(step: Mapping[str, Any]) -> int:
    """Touches of a step that reached the lead: the denominator of its reply rate."""
    return int(step["tasks_done"] if step["channel"] in ("call", "task") else step["sent"])


def step_label(step: Mapping[str, Any]) -> str:
    return f"{step['step']} ({step['channel'] or '?'})"


def draw_funnel(report: Mapping[str, Any], path: Path) -> list[str]:
    """Write the funnel of `report` (the JSON shape of `cadence report`); returns the sequences drawn."""
    fmt = chart_format(path)
    import matplotlib
    from matplotlib.figure import Figure

    sequences = [s for s in report["sequences"] if any(reached(st) or st["replied"] for st in s["steps"])]
    rows = sum(len(s["steps"]) for s in sequences)
    height = 1.2 + 0.42 * rows + 0.9 * len(sequences)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cadence", "font.size": 9}):
        fig = Figure(figsize=(9, max(height, 2.5)), layout="constrained")
        since = report.get("since")
        fig.suptitle("Step funnel: reached and replied" + (f" since {since[:10]}" if since else ""))
        if not sequences:
            ax = fig.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, "no touches yet", ha="center", va="center")
        else:
            axes = fig.subplots(len(sequences), 1, squeeze=False, height_ratios=[len(s["steps"]) for s in sequences])
            for ax, seq in zip(axes[:, 0], sequences, strict=True):
                _panel(ax, seq)
        metadata = {"Title": "cadence step funnel", "Description": _description(sequences)}
        if fmt == "svg":
            metadata["Date"] = None  # type: ignore[assignment]
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt, metadata=metadata, dpi=110)
    return [s["sequence"] for s in sequences]


def _panel(ax: Any, seq: Mapping[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    steps = seq["steps"]
    labels = [step_label(s) for s in steps]
    sent = [reached(s) for s in steps]
    replied = [int(s["replied"]) for s in steps]
    positions = list(range(len(steps)))
    bar = 0.38
    ax.barh([p - bar / 2 for p in positions], sent, height=bar, color=REACHED_COLOR, label="sent / done")
    ax.barh([p + bar / 2 for p in positions], replied, height=bar, color=REPLIED_COLOR, label="replied")
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()  # the first step on top: a funnel reads downwards
    top = max([*sent, *replied, 1])
    ax.set_xlim(0, top * 1.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for p, n, r, s in zip(positions, sent, replied, steps, strict=True):
        rate = s["reply_rate"]
        verb = "done" if s["channel"] in ("call", "task") else "sent"
        note = f"{n} {verb} · {r} replied" + (f" ({rate * 100:.1f}%)" if rate is not None else "")
        ax.text(max(n, r) + top * 0.02, p, note, va="center", fontsize=8)
    rate = seq["reply_rate"]
    title = f"{seq['sequence']}: {seq['contacted']} leads reached, {seq['replied']} replied"
    ax.set_title(title + (f" ({rate * 100:.1f}%)" if rate is not None else ""), loc="left")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def _description(sequences: list[Mapping[str, Any]]) -> str:
    """The picture in words (PNG and SVG metadata): each sequence and its step labels."""
    return "; ".join(f"{s['sequence']}: " + ", ".join(step_label(st) for st in s["steps"]) for s in sequences)
