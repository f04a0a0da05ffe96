"""The composition root: settings, store, clock, renderer and planners built once.

Nothing registers itself at import time; the CLI and the service build one `App`
and pass it down. Each part is imported when it is first built, so a command pays only for
what it uses: `cadence tasks` opens the store but never loads a template or a sequence file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cadence.clock import Clock
from cadence.config import Settings, quiet_window
from cadence.plan.tokens import SECRET_ENV
from cadence.settings_cache import cached_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from cadence.plan import planner as planning
    from cadence.plan.render import Renderer
    from cadence.plan.timing import Window
    from cadence.spec.load import Catalog
    from cadence.spec.model import Sequence
    from cadence.spec.templates import TemplateFolder
    from cadence.store.versions import SpecCache


@dataclass
class App:
    settings: Settings
    clock: Clock
    database_url: str
    secret: str | None = None
    migrate: bool = True  # bring the schema to head when the store is first opened (`cadence run` asks first)

    @classmethod
    def load(
        cls,
        config_path: Path,
        clock: Clock,
        database_url: str | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        migrate: bool = True,
    ) -> App:
        """Build from config.yaml (validated, or as validated before: `cadence.settings_cache`); secrets
        (CADENCE_SECRET) come only from the environment."""
        env = os.environ if environ is None else environ
        settings = cached_settings(config_path, env)
        url = database_url or settings.database_url(env)
        return cls(settings, clock, url, env.get(SECRET_ENV) or None, migrate=migrate)

    @cached_property
    def specs(self) -> SpecCache:
        """Published versions read so far; built on first use, so `cadence tasks` loads no sequence model."""
        from cadence.store.versions import SpecCache

        return SpecCache()

    @cached_property
    def engine(self) -> Engine:
        from cadence.store.db import open_engine

        return open_engine(self.database_url, migrate=self.migrate)

    def close(self) -> None:
        """Release pooled connections (the CLI calls this when a command ends)."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    @cached_property
    def renderer(self) -> Renderer:
        from cadence.plan.render import Renderer

        return Renderer(self.settings.templates_dir, limits=self.settings.render.limits)

    def renderer_for(self, conn: Connection, version_id: int) -> Renderer:
        """The renderer of one published version: its stored templates first, then the folder."""
        from cadence.plan.render import Renderer

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
        from cadence.spec.templates import TemplateFolder

        return TemplateFolder(self.settings.templates_dir, self.settings.render.limits)

    @cached_property
    def catalog(self) -> Catalog:
        from cadence.spec.load import load_catalog

        return load_catalog(self.settings.sequences_dir, self.templates, base=self.settings.root)

    @cached_property
    def defaults(self) -> planning.ScheduleDefaults:
        from cadence.plan import planner as planning

        s = self.settings.schedule
        return planning.ScheduleDefaults(s.window, tuple(s.days), s.holidays, s.spread)

    @cached_property
    def sms_hours(self) -> Window:
        return quiet_window(self.settings.sms.quiet_hours)

    def planner(
        self, sequence: Sequence, timezone: str | None, country: str | None, region: str | None = None
    ) -> planning.Planner:
        """The planner of one sequence for one lead: its zone, and the holidays of its country or region."""
        from cadence.plan import planner as planning

        holidays = self.settings.holiday_calendar_of(country, region)
        calendar = planning.calendar_for(self.defaults, sequence.schedule, timezone or self.settings.timezone, holidays)
        return planning.Planner(sequence, calendar, self.sms_hours)
