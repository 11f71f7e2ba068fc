"""Search over every session (SQLite FTS5) and exports (subtitles, notes, JSON)."""
