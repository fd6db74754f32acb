"""Answers kept per configuration version: discovery is asked often and changes only
when the configuration does."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DiscoveryCache"]


@dataclass
class DiscoveryCache:
    """JSON bodies of one configuration version, by (caller, what was asked). A newer
    version empties it; an answer computed from older tables is not kept.

    Example:
        >>> cache = DiscoveryCache()
        >>> cache.put(7, ("motcua", "services"), b"{}")
        >>> cache.get(7, ("motcua", "services")), cache.get(8, ("motcua", "services"))
        (b'{}', None)
    """

    version: int = -1
    bodies: dict[tuple[str, ...], bytes] = field(default_factory=dict)

    def get(self, version: int, key: tuple[str, ...]) -> bytes | None:
        return self.bodies.get(key) if version == self.version else None

    def put(self, version: int, key: tuple[str, ...], body: bytes) -> None:
        if version < self.version:
            return
        if version > self.version:
            self.version, self.bodies = version, {}
        self.bodies[key] = body
