"""Adapters by name. A service names the adapter that converts between the provincial
and the provider's message forms; `passthrough` forwards messages unchanged."""

from __future__ import annotations

import functools


@functools.cache
def known_adapters() -> frozenset[str]:
    return frozenset({"passthrough"})
