"""The console's message catalogue: every message a page or handler asks for is there,
in Vietnamese and in English (a missing one would show its key to the person)."""

from __future__ import annotations

import re

from gateway.config.diff import KINDS
from gateway.edge.console.i18n import CATALOGUE

from .conftest import REPO


def test_every_message_the_console_shows_is_in_the_catalogue_in_both_languages() -> None:
    console = REPO / "gateway" / "edge" / "console"
    used = set()
    for path in [*console.glob("*.py"), *(console / "templates").glob("*.html")]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9]+)["']""", path.read_text()))
    # Keys put together in a template ("clients.grace_" ~ g): each of their endings.
    prefixes = {k for k in used if k.endswith("_")}
    made = {
        "clients.grace_": ("0", "300", "3600", "86400"),
        "clients.kind_": ("secret", "api_key"),
        "dash.breaker_": ("closed", "open", "half_open"),
        "edit.title_": ("new", "edit"),
        "edit.preview_": ("create", "update", "delete"),
    }
    assert prefixes == set(made)
    used = (used - prefixes) | {p + end for p, ends in made.items() for end in ends}
    used |= {f"dash.{o}" for o in ("success", "refused", "failed")}  # t("dash." ~ outcome)
    # A change's summary (_changes.html): its operation, and the kind of entity it is about.
    used |= {f"change.{p}{op}" for p in ("", "access_") for op in ("create", "update", "delete")}
    used |= {f"kind.{k}" for k in KINDS if k != "access"}
    assert len(used) > 50
    assert sorted(used - set(CATALOGUE)) == []
    assert [k for k, (vi, en) in CATALOGUE.items() if not vi or not en] == []
