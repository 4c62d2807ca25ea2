"""SQLite storage: call history, session logs and application storage, written off the reactor thread."""
