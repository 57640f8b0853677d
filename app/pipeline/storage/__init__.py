"""The gallery on disk and shared: SQLite and PostgreSQL stores, the mirror, backups."""
