"""Will a lead's messages render? Checked strictly at enrollment, so a lead lacking a field a step needs
is refused now ("L7 lacks first_name, used by outbound-saas/intro.md.j2"), not failed on day 9.

Every step the lead would get (its own A/B variant of each) is rendered with the lead's
data: subjects, titles and templates, in strict mode. Rendering 14 templates for each of
100,000 leads would cost minutes, so leads that share the same filled-in fields, owner and
variants share one check: what a template lacks depends on which fields are blank, not on
their values. (A template whose branches depend on values can still fail at send time for
a lead the shared check passed; the send-time check stays, and says why.)

A lead's shape costs a tuple of presence flags: the check reads only what a template sees
(`LeadFields`, which `store.enrolling.Candidate` is), so enrolling reads each lead once. A
shared answer names each lead it refuses, not the lead that first gave it.
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from cadence.plan.render import Renderer, RenderError
from cadence.plan.template_context import LEAD_KEYS, LeadFields, template_context
from cadence.plan.variants import assign
from cadence.spec.model import Sequence

if TYPE_CHECKING:
    from cadence.app import App

_MISSING = re.compile(r"has no attribute '([^']+)'|'([^']+)' is undefined")
PREVIEW_UNSUBSCRIBE_URL = "https://example.invalid/u/check"  # stands in when links are signed at send time
_STANDARD = attrgetter(*LEAD_KEYS)
_UNSEEN: tuple[bool, str] = (False, "not checked yet")  # compared by identity


class Readiness:
    """Checks leads against one sequence version's templates, remembering what each shape of lead gave."""

    def __init__(self, app: App, spec: Sequence, renderer: Renderer):
        self.app = app
        self.spec = spec
        self.renderer = renderer
        self._split = tuple(step for step in spec.steps if step.variants)  # the steps whose arm depends on the lead
        # shape -> None (renders), or (names the lead, the problem): a shared problem is worded once per lead
        self._known: dict[tuple[Any, ...], tuple[bool, str] | None] = {}
        self._extras = {"unsubscribe_url": PREVIEW_UNSUBSCRIBE_URL} if app.settings.public_url and app.secret else {}

    def problem(self, lead: LeadFields) -> str | None:
        """Why this lead's messages would not render (the first step that fails), or None."""
        arms = tuple([assign(self.spec.id, step, lead.id) for step in self._split]) if self._split else ()
        key = (_filled(lead), lead.owner, arms)
        known = self._known.get(key, _UNSEEN)
        if known is _UNSEEN:
            known, shared = self._render_all(lead)
            if shared:
                self._known[key] = known
        if known is None:
            return None
        names_lead, text = known
        return f"{lead.id}{text}" if names_lead else text

    def _render_all(self, lead: LeadFields) -> tuple[tuple[bool, str] | None, bool]:
        """(the problem or None, whether leads of the same shape share the answer)."""
        try:
            sender = self.app.settings.sender(lead.owner or "")
        except KeyError:
            sender = None
        for step in self.spec.steps:
            arm = step.variant(assign(self.spec.id, step, lead.id))
            ctx = template_context(lead, sender, self.spec, arm, self._extras)
            for source, name in ((arm.subject, "subject"), (arm.title, "title")):
                if source:
                    try:
                        self.renderer.subject(source, ctx)
                    except Exception as exc:  # a RenderError, or whatever a template expression raised
                        return self._explain(lead, f"{self.spec.id}/{step.id} {name}", exc)
            if arm.template:
                try:
                    self.renderer.text(arm.template, ctx)
                except Exception as exc:  # a RenderError, or whatever a template expression raised
                    return self._explain(lead, arm.template, exc)
        return None, True

    def _explain(self, lead: LeadFields, where: str, exc: Exception) -> tuple[tuple[bool, str], bool]:
        """((whether the problem starts with the lead's id, the rest of it), whether it is shared)."""
        found = _MISSING.search(str(exc)) if isinstance(exc, RenderError) else None
        if found:
            field = found.group(1) or found.group(2)
            return (True, f" lacks {field}, used by {where}"), True
        reason = str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
        if getattr(exc, "template_fault", False):  # the template is wrong whatever the lead: it says so once for all
            return (False, f"{where} cannot be rendered for any lead: {reason} (fix the template)"), True
        return (True, f": {where} cannot be rendered: {reason}"), False


def _filled(lead: LeadFields) -> tuple[Any, ...]:
    """Which of the lead's fields hold a value (blank ones count as missing, as when sending).

    One flag per standard field, then the names of the filled custom fields (if it has any).
    """
    # a list comprehension: cheaper than a generator, and this runs once a lead
    flags = tuple([v is not None and (not isinstance(v, str) or v.strip() != "") for v in _STANDARD(lead)])
    custom = lead.fields
    if not custom:
        return flags
    return (*flags, frozenset(k for k, v in custom.items() if _present(v)))


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())
