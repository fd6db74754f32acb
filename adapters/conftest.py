"""Adapter tests live beside their adapters; they use the same fixtures as tests/."""

from tests.conftest import *  # noqa: F403
