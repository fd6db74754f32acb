"""Per-agency adapters. Each adapter is one sub-package here, found by name from a
service's configuration."""
