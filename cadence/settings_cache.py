"""config.yaml, validated once per version of the file: a rep who types `cadence tasks` twenty times a
day should not wait for the same file to be validated twenty times.

Validating config.yaml means YAML with line numbers, every pydantic model's schema, email-validator's
regexes, the holidays registry and phonenumbers: about a quarter of a second, more than the rest of
`cadence tasks`. A valid file's settings are therefore kept, pickled, in the user's cache folder
(`$CADENCE_CACHE_DIR`, else `$XDG_CACHE_HOME/cadence`, else `~/.cache/cadence`; `CADENCE_CACHE_DIR=off`
turns this off). The key covers all the result depends on: the file's bytes and its folder (relative
paths are resolved against it), Python's version, cadence's own code, and the versions of the libraries
that validation asks. Change any of them and the file is validated afresh; a file with errors is never
kept, so its errors are reported every time.

The folder must be the user's own and writable by no one else, because a pickle runs code when it
is read; anything else about it (missing, unreadable, corrupt, another user's) makes cadence validate
the file as if there were no cache, and say nothing.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path

import cadence
from cadence.config import Settings, load_settings

CACHE_ENV = "CADENCE_CACHE_DIR"
KEEP = 32  # cached files kept; the oldest go first (one per version of each project's config.yaml)
# Libraries whose answers validation depends on (a calendar code, a phone number, an address).
_LIBRARIES = ("pydantic", "pydantic_core", "holidays", "phonenumbers", "email_validator", "yaml")


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    chosen = env.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "no") else Path(chosen)
    base = env.get("XDG_CACHE_HOME") or (str(Path(env["HOME"]) / ".cache") if env.get("HOME") else None)
    return Path(base) / "cadence" if base else None


def cached_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """`load_settings(path)`, from the cache when this very file was validated before."""
    folder = cache_dir(environ)
    try:
        data = path.read_bytes()
    except OSError:
        return load_settings(path)  # it says what is wrong with the file
    entry = folder / f"settings-{_key(path, data)}.pickle" if folder is not None else None
    if entry is not None and _private(folder):
        found = _read(entry)
        if found is not None:
            return found
    settings = load_settings(path)
    if entry is not None:
        _write(entry, settings)
    return settings


def _key(path: Path, data: bytes) -> str:
    digest = hashlib.sha256()
    for part in (sys.version, cadence.__version__, str(path.parent.resolve())):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(data).digest())
    package = Path(cadence.__file__).parent
    for folder in (package, package / "spec"):  # the code that defines and checks the settings
        for item in sorted(os.scandir(folder), key=lambda e: e.name):
            if item.name.endswith(".py"):
                info = item.stat()
                digest.update(f"{item.name}:{info.st_mtime_ns}:{info.st_size}\0".encode())
    for name in _LIBRARIES:
        spec = find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin:
            info = os.stat(origin)
            digest.update(f"{name}:{origin}:{info.st_mtime_ns}:{info.st_size}\0".encode())
    return digest.hexdigest()[:40]


def _private(folder: Path | None) -> bool:
    """The folder exists, is the user's own, and no one else may write in it."""
    if folder is None:
        return False
    try:
        info = folder.stat()
    except OSError:
        return False
    shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not shared


def _read(entry: Path) -> Settings | None:
    try:
        info = entry.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        found = pickle.loads(entry.read_bytes())
    except Exception:  # missing, unreadable or from an older layout: validate the file instead
        return None
    return found if isinstance(found, Settings) else None


def _write(entry: Path, settings: Settings) -> None:
    """Keep the settings for next time; a cache that cannot be written is no reason to fail the command."""
    folder = entry.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(folder):
            return
        temporary = folder / f".{entry.name}.{os.getpid()}"
        temporary.write_bytes(pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL))
        os.chmod(temporary, 0o600)
        os.replace(temporary, entry)
        kept = sorted(folder.glob("settings-*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in kept[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        return
