"""Adding a workspace user to config.yaml: only the argon2 hash is written, and the file keeps its layout.

`cadence users add` and `make demo` both come here. ruamel.yaml's round-trip keeps the file's
comments, quoting and the starter's indentation, so a reviewed config.yaml gains a user in a
diff of a few lines. Adding a user who is already listed sets their new password (and their
role or name, when given): that is how a manager resets one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    """The standard `$argon2id$...` string (argon2-cffi's defaults)."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"the password must be at least {MIN_LENGTH} characters")
    return PasswordHasher().hash(password)


def add_user(config: Path, user_id: str, password: str, *, role: str | None = None, name: str | None = None) -> bool:
    """Add or update the user in `config`; True when the user was new. The caller checks the role and id."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    hashed = hash_password(password)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # a hash on one line
    yaml.indent(mapping=2, sequence=4, offset=2)  # the starter's layout: list items indented under their key
    doc: Any = yaml.load(config.read_text(encoding="utf-8")) or CommentedMap()
    users = doc.get("users")
    if users is None:
        users = doc["users"] = CommentedSeq()
    entry = next((u for u in users if isinstance(u, dict) and u.get("id") == user_id), None)
    new = entry is None
    if entry is None:
        entry = CommentedMap(id=user_id)
        users.append(entry)
    if name:
        entry["name"] = name
    entry["role"] = role or entry.get("role") or "sdr"
    entry["password_hash"] = hashed
    with config.open("w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    return new
