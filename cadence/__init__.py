"""cadence: a self-hosted multichannel outreach cadence engine.

Sequences live as reviewed YAML files, every touch is planned in the lead's own
time zone, and the engine runs on SQLite or PostgreSQL through the same code.
"""

__version__ = "0.1.0"
