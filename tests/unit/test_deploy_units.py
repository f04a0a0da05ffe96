"""The systemd units in deploy/ start what the README says they start, and systemd accepts them.

Each `deploy/*.service` is read in systemd's own dialect (sections, repeated keys, an empty
assignment resetting a list, `\\` continuing a line, comment lines inside a continuation) and
checked for what a deployment depends on: it runs `cadence run` or `cadence serve` by an absolute
path, with options the real CLI has (and values it accepts), as a dedicated user with the
environment file, restarts on failure, and waits longer than the engine's SIGTERM grace before
killing. `deploy/cadence.env.example` lists exactly the environment variables cadence reads.

When `systemd-analyze` is on the PATH, `systemd-analyze verify` also reads copies of the units
(the template instantiated, ExecStart pointed at a stand-in executable, since verify insists the
binary exists) and must have nothing to say: it needs no running systemd, so it works in a
container. Without it, the parsing checks above still run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from cadence.cli.app import app as cli_app
from cadence.config import Settings
from cadence.engine.runner import GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
ENV_EXAMPLE = DEPLOY / "cadence.env.example"
ENV_FILE = "/etc/cadence/cadence.env"  # where the README says to install the example
STARTER_CONFIG = ROOT / "cadence" / "starter" / "config.yaml"
SUBCOMMAND = {"cadence-worker@.service": "run", "cadence-serve.service": "serve"}
INSTANCE = "9101"  # the template's instance name is the worker's metrics port
EXEC_PREFIXES = "-@:+!"  # ExecStart= special prefixes (ignore failure, argv0, no specifiers, privileges)


@dataclass
class Unit:
    """A unit file as systemd reads it: each section's assignments, in order."""

    name: str
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def values(self, section: str, key: str) -> list[str]:
        """Every value of `key`, as systemd accumulates them: an empty assignment clears the list."""
        out: list[str] = []
        for k, v in self.sections.get(section, []):
            if k == key:
                out = [] if v == "" else [*out, v]
        return out

    def last(self, section: str, key: str) -> str | None:
        found = self.values(section, key)
        return found[-1] if found else None


def parse_unit(name: str, text: str) -> Unit:
    """systemd's INI dialect; a line it would reject fails with the line's number."""
    unit = Unit(name)
    section: str | None = None
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending and line.startswith(("#", ";")):
            continue  # comment lines inside a continuation are skipped, the continuation goes on
        if not pending:
            if not line or line.startswith(("#", ";")):
                continue
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        joined = " ".join([*pending, line]).strip()
        pending = []
        if joined.startswith("[") and joined.endswith("]"):
            section = joined[1:-1]
            unit.sections.setdefault(section, [])
            continue
        key, eq, value = joined.partition("=")
        assert eq, f"{name}:{start}: not a KEY=value line: {raw!r}"
        assert section is not None, f"{name}:{start}: {key.strip()}= comes before any [Section]"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key.strip()), f"{name}:{start}: bad key {key!r}"
        unit.sections[section].append((key.strip(), value.strip()))
    assert not pending, f"{name}: the file ends inside a `\\` continuation"
    return unit


def instantiate(unit: Unit, instance: str) -> Unit:
    """The unit as systemd runs `name@instance`: %i and %I replaced (%% stays a literal %)."""

    def fill(value: str) -> str:
        return re.sub(r"%([%iI])", lambda m: "%" if m.group(1) == "%" else instance, value)

    return Unit(
        unit.name.replace("@.", f"@{instance}."),
        {s: [(k, fill(v)) for k, v in pairs] for s, pairs in unit.sections.items()},
    )


def seconds(span: str) -> float:
    """A systemd time span ("60s", "1min 30s", "90", "2m") in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span.strip())
    assert parts and "".join(n + u for n, u in parts) == re.sub(r"\s+", "", span), f"not a time span: {span!r}"
    return sum(float(n) * units[u or "s"] for n, u in parts)


def exec_start(unit: Unit) -> list[str]:
    commands = unit.values("Service", "ExecStart")
    assert len(commands) == 1, f"{unit.name}: expected one ExecStart=, found {commands}"
    argv = shlex.split(commands[0])
    argv[0] = argv[0].lstrip(EXEC_PREFIXES)
    return argv


def split_command(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """(global options, subcommand, its arguments) of a `cadence ...` command line."""
    root: Any = typer.main.get_command(cli_app)
    takes_value = {o for p in root.params if is_option(p) and not p.is_flag for o in p.opts}
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        option = argv[i].split("=", 1)[0]
        assert option in options_of(root), f"`cadence` has no global option {option}"
        i += 2 if argv[i] in takes_value else 1
    assert i < len(argv), f"no subcommand in {argv}"
    assert argv[i] in root.commands, f"`cadence` has no command {argv[i]!r}"
    return argv[1:i], argv[i], argv[i + 1 :]


def is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", None) == "option"  # typer ships its own click: no isinstance


def options_of(command: Any) -> set[str]:
    return {o for p in command.params if is_option(p) for o in [*p.opts, *p.secondary_opts]}


def env_assignments(text: str) -> list[str]:
    """The variables an EnvironmentFile names: `NAME=value` lines, and commented-out `# NAME=value` ones."""
    return re.findall(r"^[#;]?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)


def variables_cadence_reads() -> set[str]:
    """Every variable name cadence's code or shipped config asks the environment for.

    The fixed names are the `"CADENCE_..."` string literals in the package; the others are the
    defaults of config.yaml's `*_env` keys (Twilio's) and the names the starter config.yaml gives
    the keys that have no default (SMTP's). A mailbox's IMAP variables are named per mailbox.
    """
    found = set()
    for path in (ROOT / "cadence").rglob("*.py"):
        found |= set(re.findall(r"""["'](CADENCE_[A-Z0-9_]+)["']""", path.read_text(encoding="utf-8")))

    def defaults(model: type) -> None:
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            if name.endswith("_env") and isinstance(info.default, str):
                found.add(info.default)
            if isinstance(info.annotation, type) and hasattr(info.annotation, "model_fields"):
                defaults(info.annotation)

    def named(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if str(key).endswith("_env") and isinstance(item, str):
                    found.add(item)
                named(item)
        elif isinstance(value, list):
            for item in value:
                named(item)

    defaults(Settings)
    named(yaml.safe_load(STARTER_CONFIG.read_text(encoding="utf-8")))
    return found


def load(path: Path) -> Unit:
    return parse_unit(path.name, path.read_text(encoding="utf-8"))


def as_run(path: Path) -> Unit:
    unit = load(path)
    return instantiate(unit, INSTANCE) if "@." in path.name else unit


unit_files = pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])


def test_deploy_ships_a_worker_template_and_a_serve_unit():
    assert {p.name for p in UNITS} >= set(SUBCOMMAND), f"deploy/ holds {[p.name for p in UNITS]}"
    assert ENV_EXAMPLE.is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Service]\nExecStart=/a \\\n  --b \\\n  # a comment\n  --c\n", [("ExecStart", "/a --b --c")]),
        ("[Service]\nEnvironment=A=1\nEnvironment=B=2\n", [("Environment", "A=1"), ("Environment", "B=2")]),
        ("; note\n[Service]\n  User = cadence  \n", [("User", "cadence")]),
    ],
)
def test_the_parser_reads_systemds_dialect(text, expected):
    assert parse_unit("x.service", text).sections["Service"] == expected


def test_an_empty_assignment_resets_a_list_as_in_systemd():
    unit = parse_unit("x.service", "[Service]\nExecStart=/old\nExecStart=\nExecStart=/new\n")
    assert unit.values("Service", "ExecStart") == ["/new"]


@unit_files
def test_unit_has_unit_service_and_install_sections(path):
    unit = load(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections), f"{path.name}: sections {list(unit.sections)}"
    assert unit.last("Unit", "Description")
    assert unit.values("Install", "WantedBy") == ["multi-user.target"]


@unit_files
def test_unit_starts_cadence_by_an_absolute_path(path):
    argv = exec_start(as_run(path))
    program = Path(argv[0])
    assert program.is_absolute(), f"{path.name}: systemd needs an absolute path, not {argv[0]!r}"
    assert program.name == "cadence", f"{path.name}: runs {argv[0]}"
    _, subcommand, _ = split_command(argv)
    assert subcommand == SUBCOMMAND.get(path.name, subcommand), f"{path.name}: runs `cadence {subcommand}`"
    assert subcommand in {"run", "serve"}


@unit_files
def test_every_option_in_execstart_is_one_the_cli_has_with_a_value_it_accepts(path):
    """Options are looked up on the real command (what `cadence <cmd> --help` lists), then parsed by it."""
    argv = exec_start(as_run(path))
    global_options, subcommand, arguments = split_command(argv)
    root: Any = typer.main.get_command(cli_app)
    command = root.commands[subcommand]
    for given, known in ((global_options, options_of(root)), (arguments, options_of(command))):
        named = {a.split("=", 1)[0] for a in given if a.startswith("-")}
        assert named <= known, f"{path.name}: `cadence {subcommand}` has no {sorted(named - known)}"
    root.make_context("cadence", [*global_options, subcommand], resilient_parsing=True)
    command.make_context(subcommand, arguments)  # a value the option refuses raises BadParameter


def test_each_worker_serves_metrics_on_the_port_its_instance_names():
    argv = exec_start(instantiate(load(DEPLOY / "cadence-worker@.service"), INSTANCE))
    _, _, arguments = split_command(argv)
    assert "--metrics-port" in arguments and "--log-json" in arguments
    assert arguments[arguments.index("--metrics-port") + 1] == INSTANCE
    assert "--migrate" not in arguments, "workers never migrate: `cadence db upgrade` runs once per release"


def test_serve_listens_on_loopback_behind_the_proxy():
    _, _, arguments = split_command(exec_start(load(DEPLOY / "cadence-serve.service")))
    assert arguments[arguments.index("--host") + 1] == "127.0.0.1"


@unit_files
def test_unit_waits_longer_than_the_engines_grace_before_killing(path):
    unit = load(path)
    assert unit.last("Service", "KillSignal") in (None, "SIGTERM", "TERM", "15")
    timeout = unit.last("Service", "TimeoutStopSec")
    assert timeout is not None, f"{path.name}: TimeoutStopSec is not set (systemd's default is 90 s, set it)"
    assert seconds(timeout) > GRACE_SECONDS, f"{path.name}: TimeoutStopSec={timeout} is not over {GRACE_SECONDS} s"


@unit_files
def test_unit_restarts_runs_as_a_dedicated_user_with_the_environment_file(path):
    unit = load(path)
    assert unit.last("Service", "Restart") in {"on-failure", "on-abnormal", "always"}
    assert unit.last("Service", "User") not in {None, "", "root", "0"}, f"{path.name}: set User= (not root)"
    assert unit.values("Service", "EnvironmentFile") == [ENV_FILE]
    directory = unit.last("Service", "WorkingDirectory")
    assert directory and Path(directory).is_absolute()
    assert unit.last("Service", "NoNewPrivileges") == "yes"
    assert unit.last("Service", "ProtectSystem") == "strict"
    assert directory in " ".join(unit.values("Service", "ReadWritePaths")).split()


def test_the_env_example_lists_exactly_the_variables_cadence_reads():
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    documented = env_assignments(text)
    assert len(documented) == len(set(documented)), f"named twice: {sorted(documented)}"
    reads = variables_cadence_reads()
    assert set(documented) - reads == set(), "documented, but cadence never reads it"
    assert reads - set(documented) == set(), "cadence reads it, but deploy/cadence.env.example does not say"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"not a plain NAME=value line: {line!r}"
    assert re.search(r"^CADENCE_NOW=", text, flags=re.MULTILINE) is None, "CADENCE_NOW pins the clock: never set it"


@unit_files
def test_systemd_analyze_verify_finds_nothing_to_say(path, tmp_path):
    """verify warns about unknown keys and bad values with exit status 0: its output must be empty too."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        load(path)  # the parsing checks above are all there is without systemd
        return
    stand_in = tmp_path / "cadence"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    program = exec_start(load(path))[0]
    (tmp_path / path.name).write_text(path.read_text(encoding="utf-8").replace(program, str(stand_in)))
    name = path.name.replace("@.", f"@{INSTANCE}.")  # systemd finds the template for the instance itself
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:", "SYSTEMD_LOG_COLOR": "0"}
    done = subprocess.run(
        [analyze, "verify", name], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and said == "", f"systemd-analyze verify {name} (exit {done.returncode}):\n{said}"
