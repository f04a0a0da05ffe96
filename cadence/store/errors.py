"""The store's exceptions, so code above it can handle a lost race without importing the database driver.

Conflict    a write lost a race the database decided (a unique index): nothing of it was
            written, and the caller's transaction (or savepoint) must be rolled back
"""

from __future__ import annotations


class Conflict(Exception):
    """A concurrent writer got there first (say, enrolled the same lead); retrying sees its row."""
