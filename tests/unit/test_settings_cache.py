"""config.yaml is validated once per version of the file; the cache never hides an error or an edit,
and is used only from a folder no one else can write."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from cadence import settings_cache
from cadence.config import Settings
from cadence.settings_cache import CACHE_ENV, KEEP, cache_dir, cached_settings
from cadence.spec.diagnostics import SpecError

CONFIG = "timezone: America/New_York\nsenders:\n  - {id: alice, name: Alice, email: Alice@Acme.example}\n"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every real validation of config.yaml (the cache's own call of `load_settings`), in order."""
    calls: list[Path] = []
    real = settings_cache.load_settings

    def validate(path: Path) -> Settings:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(settings_cache, "load_settings", validate)
    return calls


def _setup(tmp_path: Path, text: str = CONFIG) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "project" / "config.yaml"
    config.parent.mkdir()
    config.write_text(text)
    return config, {CACHE_ENV: str(tmp_path / "cache")}


def test_a_file_is_validated_once_and_read_back_equal(tmp_path: Path, counted: list[Path]) -> None:
    config, env = _setup(tmp_path)
    first = cached_settings(config, env)
    again = cached_settings(config, env)
    assert counted == [config]
    assert again == first and again.senders[0].email == "Alice@acme.example"  # as validated: normalized
    assert again.root == config.parent.resolve()
    folder = tmp_path / "cache"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    [entry] = folder.glob("settings-*.pickle")
    assert oct(entry.stat().st_mode & 0o777) == "0o600"


def test_an_edit_is_validated_afresh(tmp_path: Path, counted: list[Path]) -> None:
    config, env = _setup(tmp_path)
    assert cached_settings(config, env).timezone == "America/New_York"
    config.write_text(CONFIG.replace("America/New_York", "Europe/Paris"))
    assert cached_settings(config, env).timezone == "Europe/Paris"
    assert len(counted) == 2


def test_the_same_file_in_another_folder_is_its_own_entry(tmp_path: Path, counted: list[Path]) -> None:
    config, env = _setup(tmp_path)
    other = tmp_path / "elsewhere" / "config.yaml"
    other.parent.mkdir()
    other.write_text(CONFIG)
    assert cached_settings(config, env).root != cached_settings(other, env).root
    assert len(counted) == 2


def test_a_file_with_errors_is_reported_every_time_and_never_kept(tmp_path: Path, counted: list[Path]) -> None:
    config, env = _setup(tmp_path, "timezone: Mars/Olympus\n")
    for _ in range(2):
        with pytest.raises(SpecError) as caught:
            cached_settings(config, env)
        assert "config.yaml:1:" in str(caught.value)
    assert len(counted) == 2
    assert not list((tmp_path / "cache").glob("settings-*.pickle"))


def test_a_corrupt_entry_is_ignored_and_replaced(tmp_path: Path, counted: list[Path]) -> None:
    config, env = _setup(tmp_path)
    cached_settings(config, env)
    [entry] = (tmp_path / "cache").glob("settings-*.pickle")
    entry.write_bytes(b"not a pickle")
    assert cached_settings(config, env).timezone == "America/New_York"
    assert cached_settings(config, env).timezone == "America/New_York"
    assert len(counted) == 2  # validated again once, then read back
    assert isinstance(pickle.loads(entry.read_bytes()), Settings)


def test_a_folder_others_may_write_is_never_read(tmp_path: Path, counted: list[Path]) -> None:
    """A pickle runs code when it is read: a planted entry in a shared folder must not be."""
    config, env = _setup(tmp_path)
    cached_settings(config, env)
    folder = tmp_path / "cache"
    [entry] = folder.glob("settings-*.pickle")
    planted = pickle.loads(entry.read_bytes()).model_copy(update={"timezone": "Asia/Tokyo"})
    entry.write_bytes(pickle.dumps(planted))
    folder.chmod(0o777)
    try:
        assert cached_settings(config, env).timezone == "America/New_York"
        folder.chmod(0o700)
        entry.chmod(0o666)
        assert cached_settings(config, env).timezone == "America/New_York"
    finally:
        folder.chmod(0o700)
    assert len(counted) == 3


def test_off_writes_nothing(tmp_path: Path, counted: list[Path]) -> None:
    config, _ = _setup(tmp_path)
    env = {CACHE_ENV: "off", "HOME": str(tmp_path / "home")}
    cached_settings(config, env)
    cached_settings(config, env)
    assert len(counted) == 2 and not (tmp_path / "home").exists()
    assert cache_dir(env) is None


def test_the_default_folder_follows_xdg_then_home(tmp_path: Path) -> None:
    assert cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/cadence")
    assert cache_dir({"HOME": "/h"}) == Path("/h/.cache/cadence")
    assert cache_dir({}) is None


def test_an_unwritable_folder_costs_only_the_validation(tmp_path: Path, counted: list[Path]) -> None:
    config, _ = _setup(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {CACHE_ENV: str(blocker / "cache")}  # under a file: cannot be made
    assert cached_settings(config, env).timezone == "America/New_York"
    assert cached_settings(config, env).timezone == "America/New_York"
    assert len(counted) == 2


def test_only_the_newest_entries_are_kept(tmp_path: Path) -> None:
    config, env = _setup(tmp_path)
    for i in range(KEEP + 3):
        config.write_text(CONFIG + f"# edit {i}\n")
        cached_settings(config, env)
        os.utime(config)  # nothing else changes: only the bytes differ
    kept = list((tmp_path / "cache").glob("settings-*.pickle"))
    assert len(kept) == KEEP
