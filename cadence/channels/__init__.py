"""Channels: email, SMS and tasks, each a small transport behind one protocol."""
