"""The web workspace end to end (issue 14): Chromium signs in through /login and works the real pages.

Each test gets its own copy of one store (tests/browser/workspace_setup.py: the starter's leads,
ten days into outbound-saas, on Wednesday 2026-11-25 at 1 pm in New York), served by the real
app; every test checks what the page shows and what the store says. The tests also write the
README's screenshots (docs/screenshots/*.png, 1280 px wide, full page).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import pytest
from playwright.sync_api import Dialog, Page, expect
from sqlalchemy import select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.enrollment.my_day import my_day
from cadence.enrollment.status import lead_status
from cadence.manage.edit_plan import make_plan
from cadence.manage.report import EVENT_KEYS, TOUCH_KEYS, build_report
from cadence.outcomes.dispositions import log_disposition
from cadence.outcomes.history import lead_history
from cadence.outcomes.inbound_mail import Source, take_in
from cadence.store.tables import TouchT
from cadence.store.versions import published
from cadence.web import create_app
from tests.browser.conftest import ServeApp
from tests.browser.workspace_setup import ENV, PASSWORDS, TODAY, Built, build, install, reply_mail
from tests.conftest import ROOT

SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
HOSTILE = '<script>window.pwned=1</script> <img src=x onerror="window.pwned=2">'
FORGED = "This form has expired or did not come from cadence; reload the page."
LOGGED = ("L1", "L2", "L5")  # the leads whose tasks Alice logs by keyboard
T = TypeVar("T")

pytestmark = pytest.mark.browser_context_args(viewport=VIEWPORT)


def _in_a_thread(work: Callable[..., T], *args: Any) -> T:
    """Run `work` outside the main thread: Playwright's sync API keeps an event loop running in it,
    and the engine's runner calls asyncio.run()."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work, *args).result()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _in_a_thread(build, tmp_path_factory.mktemp("workspace"))


@pytest.fixture
def app(built: Built, project: Path, sqlite_url: str) -> Iterator[App]:
    """This test's own copy of the store, at TODAY."""
    install(built, project, sqlite_url)
    app = App.load(project / "config.yaml", FixedClock(parse_instant(TODAY)), database_url=sqlite_url, environ=ENV)
    yield app
    app.close()


@pytest.fixture
def site(app: App, serve_app: ServeApp) -> str:
    return serve_app(create_app(app, environ=ENV))


def sign_in(page: Page, user: str, then: str = "/today") -> None:
    """Through the real sign-in form: type the user and the password, click Sign in."""
    page.goto("/login?next=" + quote(then))
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlparse(url).path == then)
    expect(page.locator("header.top .who")).to_contain_text(f"({'manager' if user == 'maria' else 'sdr'})")


def screenshot(page: Page, name: str) -> None:
    """A full-page PNG for the README, overwritten on each run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / name, full_page=True, animations="disabled", caret="hide")


def attributes(page: Page, selector: str) -> list[dict[str, str]]:
    """Every attribute of every element `selector` matches, read in the browser."""
    script = "els => els.map(el => Object.fromEntries(Array.from(el.attributes, a => [a.name, a.value])))"
    found: list[dict[str, str]] = page.locator(selector).evaluate_all(script)
    return found


def touch(app: App, task_id: int) -> dict[str, Any]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(TouchT).where(TouchT.c.id == task_id)).mappings().one())


def _text(value: object) -> str:
    return "" if value is None else str(value)


# -- 1. My day, by keyboard ---------------------------------------------------------------------------


def test_an_sdr_works_three_tasks_by_keyboard_without_a_page_load(page: Page, site: str, app: App) -> None:
    day = my_day(app, "alice").tasks
    assert [(t.lead_id, t.step, t.due) for t in day] == [
        ("L5", "li-1", "overdue"), ("L1", "call-2", "overdue"), ("L2", "call-2", "overdue"), ("L7", "call-2", "today"),
    ]  # fmt: skip
    mia, dana, sam, ana = (t.id for t in day)
    sign_in(page, "alice")
    rows = page.locator("#task-list tr[data-task]")
    pane = page.locator("#task-pane article[data-task-id]")
    selected = page.locator("#task-list tr.selected")
    expect(rows).to_have_count(4)
    expect(page.locator("#task-list")).to_contain_text("3 overdue · 1 today")
    expect(pane).to_have_attribute("data-task-id", str(mia))  # the first task opens with the page
    expect(selected).to_have_attribute("data-task", str(mia))

    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    page.evaluate("window.cadenceMarker = 'still the same page'")

    # j/k move the selection; Enter opens the selected task in the pane.
    page.keyboard.press("j")
    expect(selected).to_have_attribute("data-task", str(dana))
    page.keyboard.press("j")
    expect(selected).to_have_attribute("data-task", str(sam))
    page.keyboard.press("k")
    expect(selected).to_have_attribute("data-task", str(dana))
    expect(pane).to_have_attribute("data-task-id", str(mia))  # moving does not open
    page.keyboard.press("Enter")
    expect(pane).to_have_attribute("data-task-id", str(dana))
    expect(pane.get_by_role("heading", name="Dana Wu")).to_be_visible()
    expect(pane.locator("pre.script")).to_contain_text("## Call Dana Wu at Northwind")

    labels = list(app.settings.dispositions)  # the keys: 1 is the first disposition of config.yaml, ...

    def key_of(code: str) -> str:
        return str(labels.index(code) + 1)

    page.keyboard.press(key_of("no_answer"))  # 5
    expect(page.locator("#task-pane [role=status]")).to_contain_text(f"task {dana} done: No answer")
    expect(pane).to_have_attribute("data-task-id", str(sam))  # the next task opens in place
    expect(rows).to_have_count(3)

    page.keyboard.press(key_of("not_now"))  # 3
    expect(page.locator("#task-pane [role=status]")).to_contain_text(
        f"task {sam} done: Connected - bad timing · recycled into nurture-quarterly on 2026-12-25"
    )
    expect(pane).to_have_attribute("data-task-id", str(ana))
    expect(rows).to_have_count(2)

    page.keyboard.press("k")  # back up to Mia's LinkedIn task, open it, log it done
    expect(selected).to_have_attribute("data-task", str(mia))
    page.keyboard.press("Enter")
    expect(pane).to_have_attribute("data-task-id", str(mia))
    expect(pane).to_contain_text("Connect on LinkedIn")
    page.keyboard.press(key_of("done"))  # 9
    expect(page.locator("#task-pane [role=status]")).to_contain_text(f"task {mia} done: Done")
    expect(pane).to_have_attribute("data-task-id", str(ana))
    expect(rows).to_have_count(1)
    expect(page.locator("#task-list")).to_contain_text("0 overdue · 1 today")

    assert page.evaluate("window.cadenceMarker") == "still the same page"  # never a full page load
    assert loads == []

    # The store agrees: three tasks logged by Alice, Ana's call still open.
    logged = {task: (touch(app, task)["status"], touch(app, task)["disposition"]) for task in (mia, dana, sam, ana)}
    assert logged == {
        mia: ("done", "done"), dana: ("done", "no_answer"), sam: ("done", "not_now"), ana: ("task_open", None),
    }  # fmt: skip
    said = {lead: [h["detail"] for h in lead_history(app, lead) if h["kind"] == "disposition"][-1] for lead in LOGGED}
    assert {lead: (d["task"], d["code"], d["by"]) for lead, d in said.items()} == {
        "L1": (dana, "no_answer", "alice"), "L2": (sam, "not_now", "alice"), "L5": (mia, "done", "alice"),
    }  # fmt: skip

    # Sam's page: recycled into nurture.
    page.goto("/leads/L2")
    details = page.locator("dl.lead-details")
    expect(details.locator("dt:text-is('Stage') + dd")).to_have_text("nurture")
    expect(page.locator("table.enrollments")).to_contain_text("finished (recycled, Wed Nov 25, 2026)")
    story = page.locator("ol.timeline.story")
    expect(story.locator("li").first).to_contain_text("recycled into nurture-quarterly on 2026-12-25")
    expect(story).to_contain_text("Logged Connected - bad timing on call-2")
    expect(page.get_by_text("Nothing planned: the lead is in no live sequence.")).to_be_visible()
    status = lead_status(app, "L2")
    assert status["lead"]["stage"] == "nurture"
    assert [(e["sequence"], e["state"], e["outcome"]) for e in status["enrollments"]] == [
        ("outbound-saas", "finished", "recycled")
    ]
    [recycled] = [h for h in lead_history(app, "L2") if h["kind"] == "action" and h["cause"] == "rule 2"]
    assert recycled["detail"]["actions"] == ["recycled into nurture-quarterly on 2026-12-25"]


# -- 2. A reply from the inbox ------------------------------------------------------------------------


def test_a_reply_read_from_the_inbox_shows_on_the_lead_page_as_text_and_ends_the_sequence(
    page: Page, site: str, app: App
) -> None:
    wrote = f"Thursday at 2 works. {HOSTILE}"
    raw = reply_mail(app, "L1", wrote, mid="<thursday-2@northwind.example>")
    out = take_in(app, raw, Source("file", label="x.eml"))
    assert out.lead == "L1" and "ended outbound-saas (replied)" in str(out.action), out.as_json()

    sign_in(page, "alice", then="/leads/L1")
    story = page.locator("ol.timeline.story")
    reply = story.locator("li.kind-event").first
    expect(reply).to_contain_text("Event: replied")
    expect(reply.locator(".text")).to_have_text(wrote)  # the markup is printed, not parsed
    expect(page.locator("table.enrollments")).to_contain_text("finished (replied, Wed Nov 25, 2026)")
    expect(page.locator("dl.lead-details dt:text-is('Stage') + dd")).to_have_text("replied")
    expect(page.get_by_text("Nothing planned: the lead is in no live sequence.")).to_be_visible()
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"

    status = lead_status(app, "L1")
    assert status["lead"]["stage"] == "replied"
    assert [(e["state"], e["outcome"]) for e in status["enrollments"]] == [("finished", "replied")]
    assert status["inbox"][0]["text"] == wrote and status["inbox"][0]["kind"] == "reply"
    assert status["enrollments"][0]["next_due_at"] is None


# -- 3. The funnel ------------------------------------------------------------------------------------


def test_a_manager_sees_the_funnel_of_cadence_report(page: Page, site: str, app: App) -> None:
    sign_in(page, "maria", then="/sequences/outbound-saas")
    expect(page.get_by_role("heading", name="Step funnel")).to_be_visible()
    expected = build_report(app, sequence_id="outbound-saas").as_json()["sequences"][0]

    [totals] = attributes(page, "dl.totals")
    for key, value in expected.items():
        if isinstance(value, (int, float)) or value is None:
            assert totals[f"data-{key.replace('_', '-')}"] == _text(value), key
    assert totals["data-finished"] == '{"bounced": 1, "qualified": 1, "replied": 1}'
    expect(page.locator("dl.totals dt:text-is('Replied') + dd")).to_have_text("1 (12.5%)")

    rows = attributes(page, "table.funnel-table tbody tr")
    steps = expected["steps"]
    assert [(r["data-step"], r["data-channel"]) for r in rows] == [(s["step"], s["channel"]) for s in steps]
    for row, step in zip(rows, steps, strict=True):
        for key in (*TOUCH_KEYS, *EVENT_KEYS):
            assert row[f"data-{key.replace('_', '-')}"] == str(step[key]), (step["step"], key)
        assert row["data-reply-rate"] == _text(step["reply_rate"])
    shown = page.locator("table.funnel-table tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[3].textContent, r.cells[7].textContent])"
    )
    assert shown == [[s["step"], str(s["sent"]), str(s["replied"])] for s in steps]  # what a reader sees
    bars = attributes(page, "figure.funnel g[data-reached]")
    assert [b["data-step"] for b in bars] == [s["step"] for s in steps]
    assert (steps[0]["step"], steps[0]["sent"]) == ("intro", 8) and sum(s["replied"] for s in steps) == 1
    assert (expected["contacted"], expected["meetings"], expected["bounced"]) == (8, 1, 1)
    expect(page.locator("section.plan [data-status]")).to_have_attribute("data-status", "none")


# -- 4. Apply an edited sequence ----------------------------------------------------------------------


def test_a_manager_applies_a_sequence_edit_after_confirming(page: Page, site: str, app: App, project: Path) -> None:
    path = project / "sequences" / "outbound-saas.yaml"
    path.write_text(
        path.read_text()
        + '  - id: li-3\n    day: 16\n    channel: task\n    title: "Send a short video message on LinkedIn"\n'
    )
    live = [
        lead for lead in (f"L{n}" for n in range(1, 9)) if lead_status(app, lead)["enrollments"][0]["state"] == "active"
    ]
    assert live == ["L1", "L2", "L5", "L6", "L7"]
    sign_in(page, "maria", then="/sequences/outbound-saas")
    head = page.locator("p.plan-head")
    expect(head).to_have_attribute("data-status", "changed")
    expect(head).to_contain_text("outbound-saas: v1 → v2 (5 live enrollments)")
    expect(page.locator("ul.diff li[data-step='li-3']")).to_have_attribute("data-change", "added")

    questions: list[str] = []

    def answer(accept: bool) -> Callable[[Dialog], None]:
        def respond(dialog: Dialog) -> None:
            questions.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        return respond

    apply = page.get_by_role("button", name="Apply")
    page.once("dialog", answer(False))  # changing one's mind publishes nothing
    apply.click()
    expect(head).to_have_attribute("data-status", "changed")
    assert questions == ["Publish outbound-saas v2 and migrate its 5 live enrollments?"]
    with app.engine.connect() as conn:
        assert published(conn, ["outbound-saas"])["outbound-saas"].version == 1

    page.once("dialog", answer(True))
    apply.click()
    expect(page.get_by_role("status")).to_have_text("published outbound-saas v2; migrated 5 live enrollments")
    expect(page.locator("section.plan [data-status]")).to_have_attribute("data-status", "none")
    assert len(questions) == 2
    with app.engine.connect() as conn:
        assert published(conn, ["outbound-saas"])["outbound-saas"].version == 2
    app.reread_files()
    assert make_plan(app, ["outbound-saas"]).empty  # `cadence plan` has nothing left to show
    assert {e["version"] for e in lead_status(app, "L1")["enrollments"]} == {2}


# -- 5. Someone else's lead ---------------------------------------------------------------------------


def test_an_sdr_opening_another_sdrs_lead_gets_403(page: Page, site: str, app: App) -> None:
    sign_in(page, "bob")
    response = page.goto("/leads/L1")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This lead belongs to another rep.")
    expect(page.locator("main")).not_to_contain_text("Dana")
    assert lead_status(app, "L1")["lead"]["owner"] == "alice"
    ok = page.goto("/leads/L3")  # his own
    assert ok is not None and ok.status == 200


# -- 6. CSRF ------------------------------------------------------------------------------------------


def test_forms_without_their_csrf_token_change_nothing(page: Page, site: str, app: App) -> None:
    sign_in(page, "alice", then="/leads/L1")
    before = lead_status(app, "L1")
    assert [e["state"] for e in before["enrollments"]] == ["active"]

    # A plain form: the pause form, its hidden token removed.
    pause = page.locator("form.pause")
    pause.locator("input[name=csrf]").evaluate("input => input.remove()")
    pause.get_by_label("Pause until").fill("2026-12-09")
    with page.expect_response(lambda r: r.url.endswith("/leads/L1/pause")) as refused:
        pause.get_by_role("button", name="Pause").click()
    assert refused.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text(FORGED)
    assert lead_status(app, "L1") == before

    # An htmx form on My day: neither the hidden field nor the X-CSRF-Token header htmx adds.
    task = next(t.id for t in my_day(app, "alice").tasks if t.lead_id == "L1")
    page.goto(f"/tasks/{task}")
    form = page.locator("form.log")
    form.locator("input[name=csrf]").evaluate("input => input.remove()")
    page.evaluate("document.body.removeAttribute('hx-headers')")
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task}/log")) as refused:
        form.get_by_role("button", name="No answer").click()
    assert refused.value.status == 403
    expect(page.locator("#task-pane")).to_contain_text(FORGED)
    assert touch(app, task)["status"] == "task_open" and touch(app, task)["disposition"] is None

    # And a request with the session cookie but no token at all.
    forged = page.request.post(f"/tasks/{task}/log", form={"code": "no_answer"})
    assert forged.status == 403
    forged = page.request.post("/leads/L1/pause", form={"until": "2026-12-09"})
    assert forged.status == 403
    assert touch(app, task)["status"] == "task_open"
    assert lead_status(app, "L1") == before

    # The refusal in the pane is a message, not a second copy of the page (site header, sign-out form, <main>).
    # BUG (checked last, so the checks above still run): guard.action answers an htmx request with the whole
    # error page, which today.js swaps into #task-pane.
    expect(page.locator("#task-pane header.top")).to_have_count(0)


# -- the README's screenshots -------------------------------------------------------------------------


def test_screenshots_for_the_readme(page: Page, site: str, app: App) -> None:
    """docs/screenshots/: My day with a call open, a lead's page with its story, a sequence's funnel."""
    mia, dana, sam, _ = (t.id for t in my_day(app, "alice").tasks)
    sign_in(page, "alice")
    page.get_by_role("link", name="Call Dana Wu (Northwind)").click()  # htmx opens it in the pane
    expect(page.locator("#task-pane article[data-task-id]")).to_have_attribute("data-task-id", str(dana))
    expect(page.locator("#task-list tr.selected")).to_have_attribute("data-task", str(dana))
    page.evaluate("document.activeElement && document.activeElement.blur()")
    screenshot(page, "my-day.png")

    log_disposition(app, dana, "no_answer", by="alice")
    log_disposition(app, sam, "not_now", "Budget frozen until the new year; call back in January.", by="alice")
    log_disposition(app, mia, "done", by="alice")
    page.goto("/leads/L2")
    expect(page.locator("ol.timeline.story li").first).to_contain_text("recycled into nurture-quarterly")
    screenshot(page, "lead.png")

    page.context.clear_cookies()
    sign_in(page, "maria", then="/sequences/outbound-saas")
    expect(page.locator("table.funnel-table tbody tr")).to_have_count(14)
    screenshot(page, "sequence-funnel.png")
    for name in ("my-day.png", "lead.png", "sequence-funnel.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
