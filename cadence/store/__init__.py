"""Persistence: the tables (SQLAlchemy Core), the engine and migrations, and the few hot queries."""
