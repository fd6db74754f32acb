"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the gateway takes part in a
trace rather than passing the caller's header along.

* The caller's `traceparent` is parsed as the recommendation says: version `00` exactly,
  a higher version by its first four fields (and, past 55 characters, a `-` after them),
  version `ff`, upper-case hex, an all-zero trace id or parent id, or two `traceparent`
  headers make it invalid, and the gateway starts a new trace.
* The provider gets a `traceparent` of version `00` with the caller's trace id and flags
  and a parent id of the gateway's own, so its spans hang under the gateway's span.
* `tracestate` goes on unchanged when the `traceparent` was valid (several headers joined
  with commas, at most 32 members and 512 characters), and is dropped with an invalid one.

Example:
    >>> t = TraceContext.from_headers(
    ...     ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], ["congo=t61rcWkgMzE"]
    ... )
    >>> t.trace_id, t.caller_span_id, t.tracestate
    ('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 'congo=t61rcWkgMzE')
    >>> t.traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    True
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TraceContext"]

_PARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_V00_LENGTH = 55
TRACESTATE_MAX_MEMBERS = 32
TRACESTATE_MAX_CHARS = 512


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str  # the gateway's own span: the provider's parent
    flags: str
    caller_span_id: str | None  # the caller's span, when it sent a valid traceparent
    tracestate: str | None

    @property
    def traceparent(self) -> str:
        """The `traceparent` to send the provider."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def from_headers(cls, traceparents: Sequence[str], tracestates: Sequence[str]) -> TraceContext:
        """The trace this exchange belongs to: the caller's, or a new one."""
        parent = _parse(traceparents[0]) if len(traceparents) == 1 else None
        if parent is None:
            return cls(secrets.token_hex(16), secrets.token_hex(8), "01", None, None)
        trace_id, caller_span, flags = parent
        return cls(trace_id, secrets.token_hex(8), flags, caller_span, _tracestate(tracestates))


def _parse(value: str) -> tuple[str, str, str] | None:
    value = value.strip(" \t")
    m = _PARENT.match(value)
    if m is None:
        return None
    version, trace_id, span_id, flags = m.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00":
        if len(value) != _V00_LENGTH:
            return None
    elif len(value) > _V00_LENGTH and value[_V00_LENGTH] != "-":
        return None
    # Version 00 defines only the sampled bit; pass that one on.
    return trace_id, span_id, "01" if int(flags, 16) & 1 else "00"


def _tracestate(values: Sequence[str]) -> str | None:
    members = [m.strip(" \t") for v in values for m in v.split(",") if m.strip(" \t")]
    if not members or len(members) > TRACESTATE_MAX_MEMBERS:
        return None
    if not all(m.isascii() and "=" in m for m in members):
        return None
    # Past the length every participant must pass on, drop members from the right,
    # those over 128 characters first, as the recommendation says.
    while len(",".join(members)) > TRACESTATE_MAX_CHARS:
        long = [i for i, m in enumerate(members) if len(m) > 128]
        members.pop(long[-1] if long else -1)
    return ",".join(members) or None
