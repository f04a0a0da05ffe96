"""Per-invocation state: the config path and the App built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cadence.cli.output import errors, fail
from cadence.clock import clock_from_env

if TYPE_CHECKING:
    from cadence.app import App


@dataclass
class State:
    config: Path = Path("config.yaml")
    _app: App | None = field(default=None, repr=False)

    def app(self, *, migrate: bool = True) -> App:
        """The App for this command; `migrate=False` opens the store as it is (`cadence run`, `cadence db`).

        Imported here, not at the top: `cadence --help` and `--version` build no App, so they never load
        the settings, the store or the sequence models.
        """
        if self._app is None:
            try:
                clock = clock_from_env()
            except ValueError as exc:
                fail(f"CADENCE_NOW: {exc}")
            if not self.config.exists():
                fail(f"{self.config}: no config file (run `cadence init DIR` for a starter project)")
            from cadence.app import App
            from cadence.spec.diagnostics import SpecError

            try:
                self._app = App.load(self.config, clock, migrate=migrate)
            except SpecError as exc:
                for d in exc.diagnostics:
                    errors.print(str(d), markup=False, soft_wrap=True)
                raise typer.Exit(1) from exc
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    obj = root.obj
    assert isinstance(obj, State)
    return obj
