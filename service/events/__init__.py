"""The change feed: events recorded with every write, served gap-free by GET /events."""
