"""The composition root: settings, store, clock, renderer and planners built once.

Nothing registers itself at import time; the CLI and the service build one `App`
and pass it down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cadence.clock import Clock
from cadence.config import Settings, load_settings, quiet_window
from cadence.plan import planner as planning
from cadence.plan.render import Renderer
from cadence.plan.timing import Window
from cadence.plan.tokens import SECRET_ENV
from cadence.spec.load import Catalog, load_catalog
from cadence.spec.model import Sequence
from cadence.spec.templates import TemplateFolder
from cadence.store.db import open_engine
from cadence.store.versions import SpecCache

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine


@dataclass
class App:
    settings: Settings
    clock: Clock
    database_url: str
    secret: str | None = None
    specs: SpecCache = field(default_factory=SpecCache)

    @classmethod
    def load(
        cls,
        config_path: Path,
        clock: Clock,
        database_url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> App:
        """Build from config.yaml; secrets (CADENCE_SECRET) come only from the environment."""
        env = os.environ if environ is None else environ
        settings = load_settings(config_path)
        return cls(settings, clock, database_url or settings.database_url(env), env.get(SECRET_ENV) or None)

    @cached_property
    def engine(self) -> Engine:
        return open_engine(self.database_url)

    def close(self) -> None:
        """Release pooled connections (the CLI calls this when a command ends)."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.settings.templates_dir, limits=self.settings.render.limits)

    def renderer_for(self, conn: Connection, version_id: int) -> Renderer:
        """The renderer of one published version: its stored templates first, then the folder."""
        renderers = self.__dict__.setdefault("_renderers", {})
        if version_id not in renderers:
            sources = self.specs.templates(conn, version_id)
            limits = self.settings.render.limits
            renderers[version_id] = Renderer(self.settings.templates_dir, sources, limits) if sources else self.renderer
        return renderers[version_id]

    def reread_files(self) -> None:
        """Forget the sequence and template files read so far; the next use reads them as they are now.

        A long-running `cadence serve` would otherwise compare the store with the files as they were
        when it started, and Apply could publish an older file than the diff it showed.
        """
        for cached in ("templates", "catalog"):
            self.__dict__.pop(cached, None)

    @cached_property
    def templates(self) -> TemplateFolder:
        return TemplateFolder(self.settings.templates_dir, self.settings.render.limits)

    @cached_property
    def catalog(self) -> Catalog:
        return load_catalog(self.settings.sequences_dir, self.templates, base=self.settings.root)

    @cached_property
    def defaults(self) -> planning.ScheduleDefaults:
        s = self.settings.schedule
        return planning.ScheduleDefaults(s.window, tuple(s.days), s.holidays, s.spread)

    @cached_property
    def sms_hours(self) -> Window:
        return quiet_window(self.settings.sms.quiet_hours)

    def planner(
        self, sequence: Sequence, timezone: str | None, country: str | None, region: str | None = None
    ) -> planning.Planner:
        """The planner of one sequence for one lead: its zone, and the holidays of its country or region."""
        holidays = self.settings.holiday_calendar_of(country, region)
        calendar = planning.calendar_for(self.defaults, sequence.schedule, timezone or self.settings.timezone, holidays)
        return planning.Planner(sequence, calendar, self.sms_hours)
