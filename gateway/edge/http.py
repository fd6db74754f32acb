"""The HTTP toolkit's answers and problem middleware, where the token endpoint, health
and the app take them from; the toolkit itself is gateway/edge/toolkit/."""

from __future__ import annotations

from gateway.edge.toolkit.middleware import problem_middleware
from gateway.edge.toolkit.responses import json_response

__all__ = ["json_response", "problem_middleware"]
