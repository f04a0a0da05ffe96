"""The day an out-of-office reply says its sender is back, read from the words around the absence.

Only the sentence that speaks of the absence (and the one after it: "I am out of the office.
I will be back on Monday.") is searched, each with the language whose absence phrase it
holds, so a phone number, a signature or a French "Je" (jeudi to a parser reading every
language) is never taken for a date. Numeric dates are read here, with the order the
language writes them (3.12. is the 3rd of December in German, 12/03 is December 3rd in
English); words ("Monday", "2. Dezember", "12 décembre") are read by `dateparser`, relative
to when the reply arrived. The latest day after that arrival wins: "out from 20 November to
4 December" means back on the 4th. "Through" or "einschließlich" a day means back the next one.

dateparser is imported on the first out-of-office reply only: it costs about 170 ms and 27
MiB, which a run reading no absences should not pay.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cadence.outcomes.inbox.phrases import ABSENCE_SUBJECT, absence

HORIZON = timedelta(days=366)  # a return date further away than this is someone else's date

_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\d\.)\s+(?=[A-ZÀ-ÝÄÖÜ¿¡])")
_ISO = re.compile(r"(?<![\d.])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d])")
_NUMERIC = re.compile(
    r"(?<![\d.:/,])(\d{1,2})([./])(\d{1,2})(?:\2(\d{4}|\d{2}))?\.?(?![\d:/])(?!\s*(?:uhr|h\b|am\b|pm\b|hrs|o'clock))",
    re.IGNORECASE,
)
_ORDINAL = re.compile(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b(?!\s+(?:of\s+)?[a-z]{3})", re.IGNORECASE)
_INCLUSIVE = re.compile(
    r"\b(?:through|thru|inclusive|einschließlich|einschliesslich|inklusive|inclus|inclusivement|t/m|tot en met"
    r"|incluso|inclusivo|incluído|compreso)\b",
    re.IGNORECASE,
)
_TIME_ONLY = re.compile(r"^(?:at |um |à |a las |às |om |alle )?\d{1,2}(?:[:h.]\d{2})?\s*(?:am|pm|uhr|h)?$", re.I)


@functools.cache
def _search_dates() -> Callable[..., Any]:
    from dateparser.search import search_dates

    return search_dates


def _sentences(text: str) -> list[str]:
    """The text's sentences, lines of one paragraph joined (autoresponders wrap mid-sentence)."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        joined = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
        out.extend(s for s in _SENTENCE_END.split(joined) if s)
    return out


def _windows(text: str, subject: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Each stretch of words about the absence, with the languages whose phrases it holds."""
    if ABSENCE_SUBJECT.search(subject):
        langs = tuple(dict.fromkeys(lang for lang, _ in absence(subject))) or ("en",)
        yield subject, langs
    sentences = _sentences(text)
    for i, sentence in enumerate(sentences):
        hits = absence(sentence)
        if hits:
            yield " ".join(sentences[i : i + 2]), tuple(dict.fromkeys(lang for lang, _ in hits))


def _next_day_of(day: date, month: int, dom: int) -> date | None:
    """The first `month`/`dom` on or after `day` (year-less dates mean the coming one)."""
    for year in (day.year, day.year + 1):
        try:
            candidate = date(year, month, dom)
        except ValueError:
            continue
        if candidate >= day:
            return candidate
    return None


@dataclass(frozen=True)
class _Said:
    """A date found in a window, where it was said, and whether the words gave its year."""

    day: date
    start: int
    end: int
    has_year: bool


def _numeric(window: str, langs: tuple[str, ...], today: date) -> tuple[list[_Said], str]:
    """Numeric dates in the window, and the window with them blanked out (same length) for the word parser."""
    found: list[_Said] = []

    def blank(m: re.Match[str]) -> str:
        return " " * len(m[0])

    def iso(m: re.Match[str]) -> str:
        with contextlib.suppress(ValueError):
            found.append(_Said(date(int(m[1]), int(m[2]), int(m[3])), m.start(), m.end(), True))
        return blank(m)

    def numeric(m: re.Match[str]) -> str:
        first, second = int(m[1]), int(m[3])
        us_order = m[2] == "/" and langs[0] == "en" and first <= 12  # 12/03 in English: December 3rd
        month, dom = (first, second) if us_order else (second, first)
        if m[4]:
            year = int(m[4]) + (2000 if len(m[4]) == 2 else 0)
            with contextlib.suppress(ValueError):
                found.append(_Said(date(year, month, dom), m.start(), m.end(), True))
        elif (day := _next_day_of(today, month, dom)) is not None:
            found.append(_Said(day, m.start(), m.end(), False))
        return blank(m)

    def ordinal(m: re.Match[str]) -> str:
        dom = int(m[1])
        for offset in range(1, 62):  # "the 7th": the next 7th of a month
            if (candidate := today + timedelta(days=offset)).day == dom:
                found.append(_Said(candidate, m.start(), m.end(), False))
                break
        return blank(m)

    rest = _NUMERIC.sub(numeric, _ISO.sub(iso, window))
    rest = _ORDINAL.sub(ordinal, rest) if "en" in langs else rest
    return found, rest


def _worded(rest: str, langs: tuple[str, ...], base: datetime) -> list[_Said]:
    """Dates written in words, read by dateparser in each of the window's languages."""
    settings = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": base,
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    found: list[_Said] = []
    for lang in langs:
        hits = _search_dates()(rest, languages=[lang], settings=settings) or []
        cursor = 0
        for said, when in hits:
            words = said.strip()
            start = rest.find(said, cursor)
            cursor = max(cursor, start + len(said)) if start >= 0 else cursor
            if not re.search(r"\d", words) and len(words) <= 3:
                continue  # "Je", "Mo", "out": a weekday or month abbreviation that is a word here
            if re.fullmatch(r"[\d\s+()/-]+", words) or _TIME_ONLY.match(words):
                continue  # a bare number, a phone number or a time of day is not a return date
            has_year = bool(re.search(r"\d{4}", words))
            found.append(_Said(when.date(), max(start, 0), max(start, 0) + len(said), has_year))
    return found


def _back_on(said: _Said, window: str, today: date) -> date | None:
    """The day the sender is back by this date, or None when it cannot be a return date.

    A year-less date just past ("from 20 November", read on the 23rd) comes out of a
    future-preferring parser as next year's: it is the start of the absence, not its end.
    """
    day = said.day
    if not said.has_year and day - timedelta(days=365) >= today - timedelta(days=90):
        return None
    if not today < day <= today + HORIZON:
        return None
    around = window[max(0, said.start - 30) : said.end + 12]
    return day + timedelta(days=1) if _INCLUSIVE.search(around) else day


def read_return_date(text: str, received_at: datetime, subject: str = "") -> date | None:
    """The day the sender says they are back, or None when the absence names no day after `received_at`."""
    base = received_at.replace(tzinfo=None)  # the day as the reply's own clock saw it
    today = base.date()
    days: list[date] = []
    for window, langs in _windows(text, subject):
        numeric, rest = _numeric(window, langs, today)
        for said in [*numeric, *_worded(rest, langs, base)]:
            if (day := _back_on(said, window, today)) is not None:
                days.append(day)
    return max(days, default=None)
