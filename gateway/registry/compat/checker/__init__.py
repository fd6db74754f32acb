"""The checker: one (reader, writer) walk, its methods grouped by keyword family."""

from gateway.registry.compat.checker.core import Checker

__all__ = ["Checker"]
