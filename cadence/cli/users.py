"""`cadence users add ID --role sdr|manager`: who may sign in to the web workspace.

The password is asked for twice (or read from the first line of standard input with
`--password-stdin`, for scripts) and only its argon2 hash is written, into config.yaml's
`users:` list, keeping the file's comments and layout (ruamel.yaml round-trip). Adding a user
who is already there sets a new password (and role or name, when given): that is how a
manager resets one.
"""

from __future__ import annotations

import sys

import typer

from cadence.cli.context import state
from cadence.cli.output import console, fail

users_app = typer.Typer(help="Who may sign in to the web workspace (cadence serve)", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("add")
def add(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="ID", help="An SDR's id is their sender id"),
    role: str | None = typer.Option(None, "--role", help="sdr or manager (default: sdr, or the user's role)"),
    name: str | None = typer.Option(None, "--name", help="How the workspace shows the user"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input"),
) -> None:
    """Add a user (or set a user's new password): only the argon2 hash goes into config.yaml."""
    from cadence.config import check_settings
    from cadence.manage.users import add_user

    path = state(ctx).config
    if role not in (None, "sdr", "manager"):
        fail(f"--role must be sdr or manager, not {role!r}")
    settings, diags = check_settings(path)
    if settings is None:
        fail(f"{path}: " + "; ".join(str(d) for d in diags if d.is_error))
    existing = settings.user(user_id)
    effective = role or (existing.role if existing else "sdr")
    if effective == "sdr" and user_id not in {s.id for s in settings.senders}:
        known = ", ".join(s.id for s in settings.senders) or "none"
        fail(f"an SDR's id is their sender id, and {user_id!r} is not a sender (senders: {known}); or --role manager")
    try:
        new = add_user(path, user_id, _password(password_stdin), role=role, name=name)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"{'added' if new else 'updated'} {effective} {user_id} in {path}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
