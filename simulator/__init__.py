"""Simulator of the national data-sharing platform (NDXP) and population database.

Run it with ``lgsp-simulator`` or ``python -m simulator``; see :mod:`simulator.app`.
"""

from simulator.app import LOOKUPS, TOKENS_ISSUED, create_app, main

__all__ = ["LOOKUPS", "TOKENS_ISSUED", "create_app", "main"]
