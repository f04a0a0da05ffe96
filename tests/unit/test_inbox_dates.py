"""The return date an out-of-office reply names: each language, with and without a date, relative days
read from when the reply arrived, and the words that only look like dates left alone."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest

from cadence.outcomes.inbox import read_return_date

BERLIN = timezone(timedelta(hours=1))
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=BERLIN)
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("I am out of the office until December 7, 2026 with limited access to email.", date(2026, 12, 7)),
        ("I'm on vacation and will be back on December 2nd.", date(2026, 12, 2)),
        ("I am on parental leave until the 7th.", date(2026, 12, 7)),
        ("I'm out of office until 12/3 and will reply then.", date(2026, 12, 3)),
        ("Ich bin bis zum 4. Dezember nicht im Büro.", date(2026, 12, 4)),
        ("Ich bin im Urlaub. Ab dem 7.12. bin ich wieder erreichbar.", date(2026, 12, 7)),
        ("Je suis absent jusqu'au 12 décembre.", date(2026, 12, 12)),
        ("Estaré fuera de la oficina hasta el 2 de diciembre.", date(2026, 12, 2)),
        ("Estou de férias até 15/12/2026.", date(2026, 12, 15)),
        ("Estarei de volta na segunda-feira, 30 de novembro.", date(2026, 11, 30)),
        ("Ik ben afwezig tot 4 december.", date(2026, 12, 4)),
        ("Sono in ferie fino al 3 dicembre.", date(2026, 12, 3)),
    ],
    ids=[
        "en",
        "en-ordinal",
        "en-day-only",
        "en-numeric",
        "de",
        "de-numeric",
        "fr",
        "es",
        "pt",
        "pt-weekday",
        "nl",
        "it",
    ],
)
def test_each_language_gives_its_return_date(text: str, back: date) -> None:
    assert read_return_date(text, MONDAY) == back


@pytest.mark.parametrize(
    "text",
    [
        "I am out of the office with limited access to email.",
        "Ich bin derzeit nicht im Büro.",
        "Je suis actuellement en congés.",
        "Estoy de vacaciones con acceso limitado al correo.",
        "Estou de férias.",
        "Ik ben afwezig.",
        "Sono fuori ufficio.",
    ],
    ids=["en", "de", "fr", "es", "pt", "nl", "it"],
)
def test_an_absence_naming_no_day_gives_no_date(text: str) -> None:
    assert read_return_date(text, MONDAY) is None


def test_back_on_monday_is_the_monday_after_the_reply_arrived() -> None:
    text = "Thanks for your note. I'm away at a conference and back on Monday."
    assert read_return_date(text, WEDNESDAY) == date(2026, 11, 30)
    assert read_return_date(text, MONDAY) == date(2026, 11, 30)  # said on a Monday: next Monday, not today
    assert read_return_date(text, datetime(2026, 12, 2, 9, 0, tzinfo=BERLIN)) == date(2026, 12, 7)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("Ich bin bis einschließlich 4. Dezember nicht im Büro.", date(2026, 12, 5)),
        ("Je suis absente jusqu'au 12 décembre inclus.", date(2026, 12, 13)),
        ("Ik ben afwezig tot en met vrijdag 4 december.", date(2026, 12, 5)),
        ("I am out of the office through December 4.", date(2026, 12, 5)),
    ],
    ids=["de", "fr", "nl", "en"],
)
def test_away_through_a_day_means_back_the_day_after(text: str, back: date) -> None:
    assert read_return_date(text, MONDAY) == back


def test_the_latest_day_of_the_absence_wins() -> None:
    text = "I am out of the office from 20 November to 4 December. I will be back on 7 December."
    assert read_return_date(text, MONDAY) == date(2026, 12, 7)


def test_the_start_of_an_absence_just_past_is_not_read_as_next_year() -> None:
    assert read_return_date("I am out of the office from 20 November to 4 December.", MONDAY) == date(2026, 12, 4)
    assert read_return_date("I am out of the office from 20.11. to 4.12.", MONDAY) == date(2026, 12, 4)


def test_a_year_less_date_in_january_read_in_december_is_next_year() -> None:
    assert read_return_date("I am on holiday until January 5.", datetime(2026, 12, 20, 9, 0, tzinfo=BERLIN)) == date(
        2027, 1, 5
    )


def test_french_je_is_not_read_as_jeudi() -> None:
    assert read_return_date("Je suis absente. Je serai de retour rapidement.", MONDAY) is None


def test_phone_numbers_times_and_dates_outside_the_absence_are_left_alone() -> None:
    text = (
        "Our office party is on December 18.\n\n"
        "I am out of the office until Monday. For urgent matters call +49 30 1234 5678 or 01 23 45 67 89 at 9:30."
    )
    assert read_return_date(text, WEDNESDAY) == date(2026, 11, 30)


def test_a_date_before_the_reply_or_a_year_away_is_no_return_date() -> None:
    assert read_return_date("I was out of the office until November 2, 2026.", MONDAY) is None
    assert read_return_date("I am on sabbatical until March 1, 2028.", MONDAY) is None


def test_the_subject_may_carry_the_date() -> None:
    assert read_return_date("I will reply when I am back.", MONDAY, subject="Out of office until Dec 3") == date(
        2026, 12, 3
    )


def test_dateparser_is_loaded_only_when_an_absence_is_read() -> None:
    probe = (
        "import sys; from datetime import datetime, UTC; from cadence.outcomes.inbox import read_message, classify;"
        "m = read_message(b'From: a@b.example\\nSubject: hi\\n\\nYes please.', datetime(2026, 11, 23, tzinfo=UTC));"
        "classify(m); print('dateparser' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
