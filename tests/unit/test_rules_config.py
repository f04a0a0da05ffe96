"""Rules and dispositions in config.yaml are validated with the line of the mistake."""

from __future__ import annotations

from pathlib import Path

from cadence.config import check_references, check_settings

CONFIG = """\
senders:
  - {id: alice, name: Alice, email: alice@acme.example}
dispositions:
  not_now: Bad timing
rules:
  - when: {disposition: not_now}
    then: {recycle: nurture-quarterly, after: 30d}
  - when: {disposition: [not_now, maybe_later]}
    then: continue
  - when: {event: replied, sequence: ghost}
    then: {enroll: outbound-hot}
  - when: {event: teleported}
    then: continue
"""


def test_rules_name_known_codes_events_and_sequences(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    settings, diags = check_settings(path)
    assert [str(d) for d in diags] == [f"{path}:12:12: event: unknown event 'teleported'; events are "
                                       "replied, bounced, unsubscribed, sms_stop, sms_reply, meeting_booked, "
                                       "out_of_office, completed, expired"]  # fmt: skip
    path.write_text(CONFIG.replace("  - when: {event: teleported}\n    then: continue\n", ""))
    settings, diags = check_settings(path)
    assert settings is not None and not diags
    refs = [str(d) for d in check_references(path, settings, {"nurture-quarterly"})]
    assert refs == [
        f"{path}:8:12: unknown disposition 'maybe_later'; known: not_now",
        f"{path}:10:28: unknown sequence 'ghost'",
        f"{path}:11:12: unknown sequence 'outbound-hot'",
    ]


def test_starter_config_rules_are_consistent() -> None:
    root = Path(__file__).resolve().parents[2]
    settings, diags = check_settings(root / "config.yaml")
    assert settings is not None and not diags
    ids = {p.stem for p in (root / "sequences").glob("*.yaml")}
    assert check_references(root / "config.yaml", settings, ids) == []
    assert len(settings.rules) == 10 and len(settings.dispositions) == 9
