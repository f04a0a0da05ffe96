"""Load every sequence file, with every problem found before any is reported.

`load_catalog` is what `cadence validate`, `enroll` and the engine use: it parses
each `sequences/*.yaml` with positions, validates its shape, then runs the
checks that need the whole file or the templates folder, on every step that can
be read even when another step cannot, so one pass shows every problem. A
sequence with any error is left out of the catalog, so nothing can enroll into
a broken file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cadence.spec.model import Schedule, Sequence, Step
from cadence.spec.sandbox import RenderError
from cadence.spec.source import Diagnostic, Located, read_yaml, validate_model
from cadence.spec.templates import TemplateFolder, sms_segments
from cadence.spec.values import Window, parse_time_of_day


@dataclass(frozen=True)
class LoadedSequence:
    spec: Sequence
    path: str
    content_hash: str
    template_hashes: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)  # name -> source, stored when published


@dataclass
class Catalog:
    sequences: dict[str, LoadedSequence]
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def get(self, sequence_id: str) -> LoadedSequence:
        try:
            return self.sequences[sequence_id]
        except KeyError:
            known = ", ".join(sorted(self.sequences)) or "none"
            broken = [d for d in self.errors if Path(d.path).stem == sequence_id]
            hint = " (its file has errors: run `cadence validate`)" if broken else ""
            raise KeyError(f"unknown sequence {sequence_id!r}{hint}; known: {known}") from None


@dataclass(frozen=True)
class Windows:
    """config.yaml's defaults the checks need: its send window and the hours SMS may go out."""

    window: Window | None = None
    sms_hours: Window | None = None


def _readable_steps(spec: Sequence | None, doc: Located) -> list[tuple[int, Step]]:
    """(index in the file, step) of every step that is well-formed, even when others are not.

    A schema error in one step must not hide the checks of the others (duplicate ids,
    `reply_to`, day order, templates), so each step is read on its own when the file as a
    whole does not validate. Its own errors were already reported with the file's.
    """
    if spec is not None:
        return list(enumerate(spec.steps))
    raw = doc.data.get("steps") if isinstance(doc.data, dict) else None
    out = []
    for index, item in enumerate(raw if isinstance(raw, list) else ()):
        try:
            out.append((index, Step.model_validate(item)))
        except ValidationError:
            continue
    return out


def _sequence_window(spec: Sequence | None, doc: Located, windows: Windows) -> tuple[Window | None, str]:
    """The send window the steps fall in and where it comes from; None when the file's own is broken."""
    schedule = spec.schedule if spec is not None else None
    if schedule is None:
        try:
            schedule = Schedule.model_validate(doc.data.get("schedule") or {})
        except ValidationError:
            return None, ""
    if schedule.window is not None:
        return Window.parse(schedule.window), ""
    return windows.window, ", config.yaml's schedule"


def _cross_checks(
    steps: list[tuple[int, Step]],
    doc: Located,
    templates: TemplateFolder,
    window: tuple[Window | None, str],
    windows: Windows,
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: dict[str, int] = {}
    by_index = dict(steps)
    raw_steps = doc.data.get("steps")
    unreadable_ids = {
        item.get("id")
        for i, item in enumerate(raw_steps or ())
        if i not in by_index and isinstance(item, dict) and isinstance(item.get("id"), str)
    }
    previous_day = 0
    for i, step in steps:
        loc = ("steps", i)
        if step.id in seen:
            out.append(
                doc.diag((*loc, "id"), f"duplicate step id {step.id!r} (first used by step {seen[step.id] + 1})")
            )
        if step.day < previous_day:
            out.append(
                doc.diag((*loc, "day"), f"day {step.day} comes after day {previous_day}: days must not decrease")
            )
        previous_day = max(previous_day, step.day)
        if step.reply_to is not None:
            out.extend(_reply_to_checks(step, i, steps, seen, unreadable_ids, doc))
        seen.setdefault(step.id, i)
        out.extend(_step_fields(step, loc, doc))
        out.extend(_at_checks(step, loc, doc, window, windows))
        if step.template is not None:
            out.extend(_template_checks(step.channel, step.template, (*loc, "template"), doc, templates))
        for key in ("subject", "title"):
            source = getattr(step, key)
            if source is not None and (err := templates.string_syntax_error(source)):
                out.append(doc.diag((*loc, key), f"{key}: Jinja2 syntax error: {err}"))
        out.extend(_variant_checks(step, loc, doc, templates))
    return out


def _reply_to_checks(
    step: Step, i: int, steps: list[tuple[int, Step]], seen: dict[str, int], unreadable_ids: set[Any], doc: Located
) -> list[Diagnostic]:
    loc = ("steps", i, "reply_to")
    target = seen.get(step.reply_to or "")
    if step.channel != "email":
        return [doc.diag(loc, "reply_to only applies to email steps")]
    if target is None:
        if step.reply_to in unreadable_ids:  # that step's own errors are reported; guessing here would mislead
            return []
        why = "a later step" if any(s.id == step.reply_to for j, s in steps if j > i) else "no step"
        return [doc.diag(loc, f"reply_to {step.reply_to!r} names {why}; it must name an earlier email step")]
    channel = dict(steps)[target].channel
    if channel != "email":
        return [doc.diag(loc, f"reply_to {step.reply_to!r} is a {channel} step, not an email")]
    return []


def _at_checks(
    step: Step, loc: tuple[str | int, ...], doc: Located, window: tuple[Window | None, str], windows: Windows
) -> list[Diagnostic]:
    """An `at` after the window closes can never be due; one before it opens goes out at the opening."""
    allowed, source = window
    if step.at is None or allowed is None:
        return []
    shown = f"{allowed}{source}"
    if step.channel == "sms" and windows.sms_hours is not None:
        shown += f"; SMS only {windows.sms_hours}"
        allowed = allowed.intersect(windows.sms_hours)
        if allowed is None:
            return [doc.diag((*loc, "at"), f"the send window ({shown}) leaves no time for an SMS")]
    at = parse_time_of_day(step.at)
    minute = at.hour * 60 + at.minute
    if minute >= allowed.end:
        message = f"at {step.at!r} is not before the window closes ({shown}): the step could never be due"
        return [doc.diag((*loc, "at"), message)]
    if minute < allowed.start:
        opening = f"{allowed.start // 60:02d}:{allowed.start % 60:02d}"
        message = f"at {step.at!r} is before the window opens ({shown}): the step goes out at {opening} instead"
        return [doc.diag((*loc, "at"), message, "warning")]
    return []


def _variant_checks(step, loc, doc: Located, templates: TemplateFolder) -> list[Diagnostic]:  # type: ignore[no-untyped-def]
    out: list[Diagnostic] = []
    seen: set[str] = set()
    for j, variant in enumerate(step.variants or ()):
        vloc = (*loc, "variants", j)
        if variant.id in seen:
            out.append(doc.diag((*vloc, "id"), f"duplicate variant id {variant.id!r} in step {step.id!r}"))
        seen.add(variant.id)
        if variant.template is not None:
            out.extend(_template_checks(step.channel, variant.template, (*vloc, "template"), doc, templates))
        if variant.subject is not None and step.channel != "email":
            out.append(doc.diag((*vloc, "subject"), "subject only applies to email steps"))
        for key in ("subject", "title"):
            source = getattr(variant, key)
            if source is not None and (err := templates.string_syntax_error(source)):
                out.append(doc.diag((*vloc, key), f"{key}: Jinja2 syntax error: {err}"))
    return out


def _step_fields(step, loc, doc: Located) -> list[Diagnostic]:  # type: ignore[no-untyped-def]
    out = []
    arms = [step.variant(v.id) for v in step.variants] if step.variants else [step]  # each variant over the step
    if step.channel in ("email", "sms", "call") and any(a.template is None for a in arms):
        out.append(doc.diag(loc, f"{step.channel} step {step.id!r} needs a template"))
    if step.channel == "email" and step.reply_to is None and any(a.subject is None for a in arms):
        out.append(doc.diag(loc, f"email step {step.id!r} needs a subject (or reply_to an earlier email)"))
    if step.channel != "email" and step.subject is not None:
        out.append(doc.diag((*loc, "subject"), "subject only applies to email steps"))
    if step.channel == "task" and step.title is None:
        out.append(doc.diag(loc, f"task step {step.id!r} needs a title"))
    return out


def _template_checks(channel: str, name: str, loc: tuple, doc: Located, templates: TemplateFolder) -> list[Diagnostic]:  # type: ignore[type-arg]
    if not templates.exists(name):
        return [doc.diag(loc, f"template {name!r} not found under {templates.templates_dir}")]
    template_path = str(templates.templates_dir / name)
    if err := templates.compile_error(name):
        line, message = err
        return [Diagnostic(template_path, line, 1, message)]
    try:
        sample = templates.sample(name, channel=channel)
    except RenderError as exc:
        if exc.template_fault:  # a loop that never ends, megabytes of text, a missing include: every lead
            return [Diagnostic(template_path, exc.line or 1, 1, f"{exc.reason} (rendered with sample values)")]
        if channel != "sms":  # sample values cannot stand in for every field a template computes with
            return []
        return [doc.diag(loc, f"template {name!r} cannot be rendered with sample values: {exc}", "warning")]
    if channel == "sms":
        segments, encoding = sms_segments(sample)
        if segments > 1:
            return [
                doc.diag(
                    loc,
                    f"SMS text is about {len(sample)} characters ({encoding}, fields counted as 10): "
                    f"it will split into {segments} segments",
                    "warning",
                )
            ]
    return []


def content_hash(spec: Sequence, template_hashes: dict[str, str]) -> str:
    payload = json.dumps({"spec": spec.model_dump(mode="json"), "templates": template_hashes}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_sequence(
    path: Path, templates: TemplateFolder, shown_as: str | None = None, windows: Windows | None = None
) -> tuple[LoadedSequence | None, list[Diagnostic]]:
    """The sequence in `path` and every problem found in it; None when any is an error.

    `windows` (config.yaml's schedule and SMS hours) lets `at` times be checked against the
    window a sequence without its own inherits.
    """
    windows = windows or Windows()
    doc, diags = read_yaml(path, shown_as)
    if doc is None:
        return None, diags
    if not isinstance(doc.data, dict):
        return None, [*diags, doc.diag((), "a sequence file must be a mapping with id, name and steps")]
    spec, errors = validate_model(Sequence, doc)
    diags += errors
    steps = _readable_steps(spec, doc)
    checks = _cross_checks(steps, doc, templates, _sequence_window(spec, doc, windows), windows)
    diags += list(dict.fromkeys(checks))  # a template two steps share is reported once
    if spec is None:
        return None, diags
    if spec.id != path.stem:
        diags.append(doc.diag(("id",), f"id {spec.id!r} differs from the file name {path.stem!r}", "warning"))
    if any(d.is_error for d in diags):
        return None, diags
    names = sorted({name for s in spec.steps for name in s.templates})
    sources = {t: (templates.templates_dir / t).read_bytes() for t in names}
    hashes = {t: hashlib.sha256(raw).hexdigest() for t, raw in sources.items()}
    texts = {t: raw.decode("utf-8") for t, raw in sources.items()}
    return LoadedSequence(spec, doc.path, content_hash(spec, hashes), hashes, texts), diags


def load_catalog(
    sequences_dir: Path, templates: TemplateFolder, base: Path | None = None, windows: Windows | None = None
) -> Catalog:
    sequences: dict[str, LoadedSequence] = {}
    diagnostics: list[Diagnostic] = []
    files = sorted([*sequences_dir.glob("*.yaml"), *sequences_dir.glob("*.yml")])
    for path in files:
        shown = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
        loaded, diags = load_sequence(path, templates, shown, windows)
        diagnostics += [d for d in diags if d not in diagnostics]  # a template two steps share is reported once
        if loaded is None:
            continue
        if loaded.spec.id in sequences:
            other = sequences[loaded.spec.id].path
            diagnostics.append(Diagnostic(shown, 1, 1, f"sequence id {loaded.spec.id!r} is already used by {other}"))
            continue
        sequences[loaded.spec.id] = loaded
    if not sequences_dir.is_dir():
        diagnostics.append(Diagnostic(str(sequences_dir), 1, 1, "sequences folder not found"))
    return Catalog(sequences, diagnostics)
