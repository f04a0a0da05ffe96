"""Messages classified per second over the tests/inbox/ corpus, beside the raw parse of the same messages (issue 13).

What is timed, in one process, on the same bytes:

- classify (the headline): `cadence.outcomes.inbox.read_message` then `classify` for every
  message of the corpus (replies, out-of-office replies in seven languages, auto-replies,
  standard and non-standard bounces from a dozen MTAs, malformed input), repeated `--times`
  times. This is all the per-message work the inbox poller does before it touches the store:
  lenient MIME reading, quoted-text stripping, DSN fields, flufl.bounce on plain notices, the
  hard/soft table, absence phrases and, for out-of-office replies, dateparser;
- raw: `email.message_from_bytes` and a walk over every part, decoding each leaf's payload
  (`get_payload(decode=True)`), of the same messages the same number of times: the floor any
  classifier built on the standard library pays, so the ratio says what classifying costs
  over parsing.

dateparser is loaded on the first out-of-office reply (about 0.2 s, once per process); that
cold start is measured and reported on its own, then every round runs warm. Each round runs
raw then classify, so both sides of the ratio see the same moment of a shared machine;
`--repeat` rounds, medians reported. After each classify round the verdicts are checked
against tests/inbox/manifest.yaml.

Run: `.venv/bin/python bench/inbox_classify.py [--times N] [--repeat N] [--json]`; the
defaults (50 times the corpus, 3 rounds) take well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import email
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from cadence.outcomes.inbox import InboundKind, classify, read_message

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "inbox"


def load_corpus() -> list[tuple[str, bytes, datetime, str]]:
    """(file, raw bytes, received_at, expected kind) for every message the manifest names."""
    manifest = yaml.safe_load((CORPUS / "manifest.yaml").read_text(encoding="utf-8"))
    default = manifest["received_at"]
    return [
        (e["file"], (CORPUS / e["file"]).read_bytes(), datetime.fromisoformat(e.get("received_at", default)), e["kind"])
        for e in manifest["messages"]
    ]


def raw_parse(raw: bytes) -> int:
    """The standard library's parse and a walk decoding every leaf: the floor under any classifier."""
    msg = email.message_from_bytes(raw)
    decoded = 0
    for part in msg.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            decoded += len(payload) if isinstance(payload, bytes) else 0
    return decoded


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def classify_pass(corpus: list[tuple[str, bytes, datetime, str]], times: int) -> list[InboundKind]:
    kinds: list[InboundKind] = []
    for _ in range(times):
        kinds.extend(classify(read_message(raw, at)).kind for _, raw, at, _ in corpus)
    return kinds


def raw_pass(corpus: list[tuple[str, bytes, datetime, str]], times: int) -> int:
    return sum(raw_parse(raw) for _ in range(times) for _, raw, _, _ in corpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=50, help="passes over the corpus per round (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of raw + classify (medians are reported)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    times, repeat = max(1, args.times), max(1, args.repeat)
    corpus = load_corpus()
    count = len(corpus) * times
    ooo = next((c for c in corpus if c[3] == InboundKind.OUT_OF_OFFICE), None)
    cold_s = timed(lambda: classify(read_message(ooo[1], ooo[2])))[1] if ooo else 0.0  # loads dateparser
    expected = [kind for _, _, _, kind in corpus] * times
    runs: dict[str, list[tuple[float, float]]] = {"raw": [], "classify": []}
    checked: list[str] = []
    for round_no in range(repeat):
        _, wall, cpu = timed(lambda: raw_pass(corpus, times))
        runs["raw"].append((wall, cpu))
        kinds, wall, cpu = timed(lambda: classify_pass(corpus, times))
        runs["classify"].append((wall, cpu))
        agree = sum(k == e for k, e in zip(kinds, expected, strict=True))
        if agree != count:
            raise SystemExit(f"round {round_no + 1}: {count - agree} verdicts differ from the manifest")
        checked.append(f"round {round_no + 1}: {agree:,} of {count:,} verdicts match tests/inbox/manifest.yaml")
    figures: dict[str, Any] = {
        "corpus_messages": len(corpus),
        "corpus_bytes": sum(len(raw) for _, raw, _, _ in corpus),
        "times": times,
        "repeat": repeat,
        "messages": count,
        "cold_start_s": cold_s,
    }
    for key, passes in runs.items():
        figures[f"{key}_runs_per_s"] = [count / wall for wall, _ in passes]
        figures[f"{key}_per_s"] = count / statistics.median(wall for wall, _ in passes)
        figures[f"{key}_cpu_ms"] = 1000 * statistics.median(cpu for _, cpu in passes) / count
    figures["classify_over_raw"] = figures["classify_per_s"] / figures["raw_per_s"]
    figures["verified"] = checked
    if args.json:
        print(json.dumps(_rounded(figures), indent=2))
        return 0
    f = figures
    print(
        f"inbox classification over tests/inbox/ ({f['corpus_messages']} messages, {f['corpus_bytes']:,} bytes),"
        f" {times} times a round; medians of {repeat} rounds, raw and classify in turn"
    )
    for key, label in (("classify", "read + classify"), ("raw", "raw parse + walk")):
        runs_text = " / ".join(f"{v:,.0f}" for v in f[f"{key}_runs_per_s"])
        print(
            f"  {label:<18} {f[f'{key}_per_s']:>9,.0f}  messages/s (runs: {runs_text});"
            f" {f[f'{key}_cpu_ms']:.3f} ms CPU a message"
        )
    print(f"  {'classify / raw':<18} {f['classify_over_raw']:>9.0%}  of the raw parse rate")
    print(f"  {'cold start':<18} {f['cold_start_s'] * 1000:>9,.0f}  ms for the first out-of-office reply (dateparser)")
    print("verified after each classify round:")
    for line in checked:
        print(f"  {line}")
    return 0


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())
