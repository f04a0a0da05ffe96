"""Every route of the workspace, in one list: the public interface of issue 14."""

from __future__ import annotations

from starlette.routing import BaseRoute

from cadence.web.workspace import leads, login, sequences, team, today


def workspace_routes() -> list[BaseRoute]:
    return [*login.ROUTES, *today.ROUTES, *leads.ROUTES, *sequences.ROUTES, *team.ROUTES]
