"""What every handler needs, built once by `create_app` and kept on the Starlette app (no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from cadence.web.auth import Keys

if TYPE_CHECKING:
    from cadence.app import App
    from cadence.engine.metrics import Metrics


@dataclass(frozen=True)
class Context:
    app: App
    keys: Keys
    metrics: Metrics


def context(request: Request) -> Context:
    ctx = request.app.state.cadence
    assert isinstance(ctx, Context)
    return ctx
