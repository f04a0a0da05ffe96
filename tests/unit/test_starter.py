"""The starter project ships inside the package, and the checkout's copies say the same.

`cadence init` writes `cadence/starter/` (read through importlib.resources, so a wheel has it).
The checkout keeps `config.yaml`, `sequences/` and `templates/` at the top for the project
guide and the tests; they must not drift from what `init` writes. `examples/leads.csv` is the
starter's leads plus rows that show how a bad row is reported, so it begins with them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.cli.project import starter

ROOT = Path(__file__).resolve().parents[2]
STARTER = Path(str(starter()))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("name", ["config.yaml", "sequences", "templates"])
def test_the_checkout_copy_matches_what_init_writes(name: str) -> None:
    shipped, checkout = STARTER / name, ROOT / name
    if shipped.is_file():
        assert checkout.read_bytes() == shipped.read_bytes(), f"copy {checkout} to {shipped} (or back)"
        return
    differ = sorted(set(_files(shipped).items()) ^ set(_files(checkout).items()))
    assert not differ, f"{name}/ and cadence/starter/{name}/ differ in {sorted({k for k, _ in differ})}"


def test_the_example_leads_begin_with_the_starter_leads() -> None:
    shipped = (STARTER / "leads.csv").read_text().splitlines()
    example = (ROOT / "examples" / "leads.csv").read_text().splitlines()

    assert example[: len(shipped)] == shipped
    assert len(example) > len(shipped)  # the rest show how bad rows are reported
