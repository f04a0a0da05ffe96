"""`cadence report` (what the sequences did) and `cadence forecast` (what N more leads will ask of each SDR)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cadence.cli.context import state
from cadence.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

WIDE = 160  # piped output is not cut to 80 columns: a report is read whole
SEQUENCE_KEYS = ("enrolled", "active", "paused", "qualified", "disqualified", "recycled", "contacted")


def report(
    ctx: typer.Context,
    sequence_id: str | None = typer.Argument(None, metavar="[SEQUENCE_ID]", help="Only this sequence"),
    since: str | None = typer.Option(
        None, "--since", help="Only what happened on or after this date (midnight in config.yaml's time zone) or time"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON"),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write one row per sequence, step and variant"),
    chart_file: Path | None = typer.Option(None, "--chart", help="Also draw the step funnel (.png or .svg)"),
) -> None:
    """Per sequence, step and A/B variant: sends, tasks, dispositions, replies (to the last touch), outcomes."""
    from cadence.manage.chart import draw_funnel
    from cadence.manage.report import build_report, since_instant

    app = state(ctx).app()
    try:
        start = since_instant(since, app.settings.timezone) if since else None
        if chart_file is not None:
            from cadence.manage.chart import chart_format

            chart_format(chart_file)
        data = build_report(app, sequence_id=sequence_id, since=start).as_json()
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    written = []
    if csv_file is not None:
        write_csv(data, csv_file)
        written.append(str(csv_file))
    if chart_file is not None:
        draw_funnel(data, chart_file)
        written.append(str(chart_file))
    if json_out:
        print_json(data)
        return
    _print_report(data)
    for path in written:
        console.print(f"wrote {path}", markup=False)


def csv_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The report flattened: a `sequence` row, then each `step` row followed by its `variant` rows."""
    from cadence.manage.report import EVENT_KEYS, TOUCH_KEYS

    codes = list(data["sequences"][0]["dispositions"]) if data["sequences"] else []

    def counts(item: dict[str, Any]) -> dict[str, Any]:
        row = {key: item[key] for key in (*TOUCH_KEYS, *EVENT_KEYS)}
        row["reply_rate"] = "" if item["reply_rate"] is None else item["reply_rate"]
        row.update({f"disposition:{code}": item["dispositions"][code] for code in codes})
        return row

    for seq in data["sequences"]:
        head = {"level": "sequence", "sequence": seq["sequence"], "step": "", "channel": "", "variant": ""}
        yield {
            **head,
            **{key: seq[key] for key in SEQUENCE_KEYS},
            "finished": sum(seq["finished"].values()),
            **counts(seq),
        }
        for step in seq["steps"]:
            where = {"sequence": seq["sequence"], "step": step["step"], "channel": step["channel"] or ""}
            yield {"level": "step", **where, "variant": "", **counts(step)}
            for variant in step["variants"]:
                yield {"level": "variant", **where, "variant": variant["variant"], **counts(variant)}


def csv_columns(data: dict[str, Any]) -> list[str]:
    from cadence.manage.report import EVENT_KEYS, TOUCH_KEYS

    codes = list(data["sequences"][0]["dispositions"]) if data["sequences"] else []
    return [
        "level", "sequence", "step", "channel", "variant", *SEQUENCE_KEYS, "finished", *TOUCH_KEYS, *EVENT_KEYS,
        "reply_rate", *(f"disposition:{code}" for code in codes),
    ]  # fmt: skip


def write_csv(data: dict[str, Any], path: Path) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=csv_columns(data), restval="")
        writer.writeheader()
        writer.writerows(csv_rows(data))


def _wide() -> Console:
    """The terminal's own width, or (piped, in a file) WIDE columns rather than rich's default 80."""
    from rich.console import Console

    return console if console.is_terminal else Console(highlight=False, width=WIDE)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _dispositions(item: dict[str, Any]) -> str:
    return ", ".join(f"{code} {n}" for code, n in item["dispositions"].items() if n)


def _print_report(data: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from cadence.manage.report import TOUCH_KEYS

    if data["since"]:
        console.print(f"since {data['since']}", markup=False)
    for seq in data["sequences"]:
        title = f"[bold]{seq['sequence']}[/] ({seq['kind'] or '?'})"
        if not seq["enrolled"] and not seq["contacted"] and not any(seq[k] for k in TOUCH_KEYS):
            console.print(f"{title}: no activity")
            continue
        finished = ", ".join(f"{outcome} {n}" for outcome, n in seq["finished"].items()) or "none"
        console.print(
            f"{title}: enrolled {seq['enrolled']}, active {seq['active']}, paused {seq['paused']}; "
            f"finished: {finished}; {seq['contacted']} leads reached, {seq['replied']} replied "
            f"({_pct(seq['reply_rate'])}), {seq['bounced']} bounced, {seq['unsubscribed']} unsubscribed, "
            f"{seq['sms_stops']} SMS stops, {seq['meetings']} meetings",
            soft_wrap=True,
        )
        table = Table(
            "step", "channel", "variant", "sent", "failed", "skipped", "tasks o/d/x", "replied", "rate", "bounced",
            "unsub", "stops", "meetings",
            box=box.SIMPLE_HEAD, pad_edge=False,
        )  # fmt: skip
        notes = []
        for step in seq["steps"]:
            for item, variant in [(step, ""), *((v, v["variant"]) for v in step["variants"])]:
                table.add_row(
                    step["step"] if not variant else "",
                    (step["channel"] or "?") if not variant else "",
                    variant,
                    str(item["sent"]), str(item["failed"]), str(item["skipped"]),
                    f"{item['tasks_opened']}/{item['tasks_done']}/{item['tasks_expired']}",
                    str(item["replied"]), _pct(item["reply_rate"]), str(item["bounced"]), str(item["unsubscribed"]),
                    str(item["sms_stops"]), str(item["meetings"]),
                )  # fmt: skip
                if _dispositions(item):
                    notes.append(f"  {step['step']}{' ' + variant if variant else ''}: {_dispositions(item)}")
        _wide().print(table)
        if notes:
            _wide().print("dispositions:\n" + "\n".join(notes), markup=False, soft_wrap=True)
    unattributed = {k: n for k, n in data["unattributed"].items() if n}
    if unattributed:
        console.print("not credited to any touch: " + ", ".join(f"{k} {n}" for k, n in unattributed.items()))
    read = {k: n for k, n in data["inbox"]["read"].items() if n}
    if read:
        console.print("read from the inbox: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in read.items()))
    for sender, health in data["inbox"]["senders"].items():
        console.print(
            f"sender {sender}: {health['hard_bounces']} hard bounces, {health['soft_bounces']} soft bounces "
            f"({health['blocks']} blocks)",
            markup=False,
        )


def forecast_cmd(
    ctx: typer.Context,
    sequence_id: str = typer.Argument(..., metavar="SEQUENCE_ID"),
    leads: int = typer.Option(..., "--leads", min=1, help="How many leads would be enrolled now"),
    reply_rate: float = typer.Option(0.0, "--reply-rate", min=0.0, max=1.0, help="Share replying to each email/SMS"),
    connect_rate: float = typer.Option(0.0, "--connect-rate", min=0.0, max=1.0, help="Share of calls that connect"),
    timezone: str | None = typer.Option(None, "--timezone", help="The leads' IANA time zone (default: config.yaml's)"),
    country: str | None = typer.Option(None, "--country", help="The leads' country, for holidays (default: config's)"),
    json_out: bool = typer.Option(False, "--json", help="Print the forecast as JSON"),
) -> None:
    """Emails, SMS, calls and tasks per day per SDR if N leads were enrolled now (expected values; writes nothing)."""
    from rich.table import Table

    from cadence.manage.forecast import forecast

    app = state(ctx).app()
    settings = app.settings
    try:
        spec = app.catalog.get(sequence_id).spec
        planner = app.planner(spec, timezone, country)
        result = forecast(
            planner,
            leads=leads,
            senders=[s.id for s in settings.senders],
            start=app.clock.now(),
            reply_rate=reply_rate,
            connect_rate=connect_rate,
            rules=settings.rules,
            per_lead_daily=settings.limits.per_lead_daily,
            daily_caps={s.id: s.daily_cap for s in settings.senders},
        )
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    data = result.as_json()
    if json_out:
        print_json(data)
        return
    local_start = result.start.astimezone(planner.calendar.tz).isoformat(timespec="minutes")
    console.print(
        f"[bold]{data['sequence']}[/]: {leads} leads enrolled {local_start} in {data['timezone']}, "
        f"reply rate {_pct(reply_rate)}, connect rate {_pct(connect_rate)}; leads per SDR: "
        + ", ".join(f"{s} {n}" for s, n in data["senders"].items()),
        soft_wrap=True,
    )
    table = Table("date", "SDR", "emails", "SMS", "calls", "tasks")
    for day in data["days"]:
        for sender, counts in day["senders"].items():
            if any(counts.values()):
                table.add_row(
                    f"{day['date']} {day['weekday']}", sender,
                    *(_num(counts[c]) for c in ("email", "sms", "call", "task")),
                )  # fmt: skip
    totals = data["totals"]
    table.add_row("total", "", *(_num(totals[c]) for c in ("email", "sms", "call", "task")), style="bold")
    console.print(table)
    for item in data["over_cap"]:
        console.print(
            f"over cap: {item['sender']} on {item['date']}: {item['emails']} emails > daily_cap {item['daily_cap']}",
            markup=False,
        )


def _num(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command("forecast")(forecast_cmd)
