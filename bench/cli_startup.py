"""How long a CLI command takes from the shell, beside the cost of importing typer (and SQLAlchemy).

A rep types `cadence tasks` twenty times a day; the time to the prompt is mostly imports. Each
command runs as a subprocess, the way a shell runs it, in a starter project on SQLite (eight
leads enrolled in `outbound-saas` on a Monday, engine passes that afternoon and Tuesday morning,
so the intro emails are sent and the day-1 calls are open tasks; timed on Tuesday at 11:00). The
floors run in the same rounds, interleaved with the commands, so they share the machine's noise:

- `python -c "import typer"`, the floor of `cadence --help` and `cadence --version`;
- `python -c "import typer, sqlalchemy"`, the floor of `cadence tasks`, `cadence status L1` and
  `cadence validate`;
- and, for reference only, `python -c "import typer, typer.rich_utils"`: typer renders every
  `--help` with rich through that module, so no `--help` can start faster.

Every process reads compiled bytecode, as an installed package does: PYTHONDONTWRITEBYTECODE is
dropped and PYTHONPYCACHEPREFIX points into the work folder (the source tree stays clean), and the
warm-up rounds fill it. Each round runs every command once, in a shuffled order; the figures are
the median and p90 over the rounds after the warm-ups, and the ratio of each median to its
floor's median (targets: 1.5x for `--help`/`--version`, 2x for the rest). One more run of each
command records which heavy modules it imported (sys.modules at exit), so a regression shows
which import came back.

Commands run as `python -m cadence`; `--source DIR` puts DIR first on PYTHONPATH, so the same run
can time another checkout's `cadence` package (DIR/cadence), e.g. the one before a change.

    .venv/bin/python bench/cli_startup.py [--runs 15] [--warmup 2] [--source DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NOW = "2026-11-23T11:00:00-05:00"  # a Monday in New York: the leads are enrolled
PASSES = ("2026-11-23T16:00:00-05:00", "2026-11-24T10:00:00-05:00")  # intros sent, then the calls opened
TIMED_AT = "2026-11-24T11:00:00-05:00"
HEAVY = (
    "sqlalchemy", "sqlmodel", "alembic", "pydantic", "holidays", "phonenumbers", "jinja2", "yaml",
    "rich.table", "psycopg", "apscheduler", "dateparser", "starlette", "prometheus_client",
)  # fmt: skip
COMMANDS: dict[str, tuple[tuple[str, ...], str, float]] = {
    # label: (cadence arguments, floor, target ratio)
    "--help": (("--help",), "typer", 1.5),
    "--version": (("--version",), "typer", 1.5),
    "tasks": (("tasks",), "typer+sqlalchemy", 2.0),
    "status L1": (("status", "L1"), "typer+sqlalchemy", 2.0),
    "validate": (("validate",), "typer+sqlalchemy", 2.0),
}
FLOORS = {"typer": "import typer", "typer+sqlalchemy": "import typer, sqlalchemy"}
REFERENCES = {"typer+rich help": "import typer, typer.rich_utils"}
PROBE = """
import atexit, json, sys
out, heavy = sys.argv[1], sys.argv[2].split(",")
def _record():
    with open(out, "w") as fh:
        json.dump(sorted(m for m in heavy if m in sys.modules), fh)
atexit.register(_record)
sys.argv = ["cadence", *sys.argv[3:]]
from cadence.cli.app import main
main()
"""
CADENCE = [sys.executable, "-m", "cadence"]


def prepare(workdir: Path, env: dict[str, str]) -> Path:
    def call(*args: str, now: str = NOW, cwd: Path = workdir) -> None:
        subprocess.run([*CADENCE, *args], cwd=cwd, env={**env, "CADENCE_NOW": now}, check=True, capture_output=True)

    call("init", "p")
    project = workdir / "p"
    call("leads", "import", "leads.csv", cwd=project)
    call("enroll", "outbound-saas", "--all-new", cwd=project)
    for when in PASSES:
        call("run", "--once", now=when, cwd=project)
    return project


def once(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return seconds


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def heavy_modules(args: tuple[str, ...], cwd: Path, env: dict[str, str], workdir: Path) -> list[str]:
    out = workdir / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(out), ",".join(HEAVY), *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
    )
    found: list[str] = json.loads(out.read_text())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--source", type=Path, help="time DIR/cadence instead of the installed package")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cadence-bench-cli-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    try:
        project = prepare(workdir, env)
        env["CADENCE_NOW"] = TIMED_AT
        floors = FLOORS | REFERENCES
        runs: dict[str, list[str]] = {name: [sys.executable, "-c", code] for name, code in floors.items()}
        runs |= {label: [*CADENCE, *cmd] for label, (cmd, _, _) in COMMANDS.items()}
        times: dict[str, list[float]] = {label: [] for label in runs}
        rng = random.Random(15)
        for round_no in range(args.warmup + args.runs):
            order = list(runs)
            rng.shuffle(order)
            for label in order:
                seconds = once(runs[label], project, env)
                if round_no >= args.warmup:
                    times[label].append(seconds)
        medians = {label: statistics.median(ts) for label, ts in times.items()}
        rows: list[dict[str, Any]] = []
        for label, ts in times.items():
            row: dict[str, Any] = {
                "command": f"python -c {floors[label]!r}" if label in floors else f"cadence {label}",
                "median_ms": round(medians[label] * 1000, 1),
                "p90_ms": round(p90(ts) * 1000, 1),
            }
            if label in COMMANDS:
                cmd, floor, target = COMMANDS[label]
                row |= {
                    "floor": floor,
                    "ratio": round(medians[label] / medians[floor], 2),
                    "target": target,
                    "heavy_modules": heavy_modules(cmd, project, env, workdir),
                }
            rows.append(row)
        met = all(r["ratio"] <= r["target"] for r in rows if "ratio" in r)
        if args.json:
            source = str(args.source) if args.source else None
            figures = {"runs": args.runs, "warmup": args.warmup, "source": source, "rows": rows, "targets_met": met}
            print(json.dumps(figures))
        else:
            where = f" (cadence from {args.source})" if args.source else ""
            print(f"{args.runs} rounds after {args.warmup} warm-ups; commands and floors interleaved{where}")
            print(f"{'command':<48} {'median':>9} {'p90':>9} {'ratio':>12}  heavy modules imported")
            for label, r in zip(times, rows, strict=True):
                ratio = "floor" if label in FLOORS else "reference" if label in REFERENCES else ""
                if "ratio" in r:
                    ratio = f"{r['ratio']:.2f}x/{r['target']:g}x"
                mods = ", ".join(r.get("heavy_modules", []))
                print(f"{r['command']:<48} {r['median_ms']:>7.1f}ms {r['p90_ms']:>7.1f}ms {ratio:>12}  {mods}")
            print(f"targets met: {met}")
        return 0 if met else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
