"""Persistence: SQLModel tables, the engine and migrations, and the few hot queries."""
