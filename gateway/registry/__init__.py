"""Schema registry."""
