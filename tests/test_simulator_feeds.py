"""The simulator's change feeds for scheduled pulls: behind the platform's token, paged
(by cursor, by page number) without gaps or repeats, `since` keeping the changes after a
time and `as_of` the latest change of each citizen or dossier made by then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from simulator.app import create_app
from simulator.feeds import DOSSIER_PATH, FEEDS, RESIDENCE_PATH


@pytest.fixture
async def sim() -> AsyncIterator[tuple[httpx.AsyncClient, TestServer]]:
    server = TestServer(create_app({"p": "s"}), host="127.0.0.1")
    await server.start_server()
    async with httpx.AsyncClient(base_url=str(server.make_url("")).rstrip("/")) as http:
        r = await http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("p", "s")
        )
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield http, server
    await server.close()


async def _all_by_cursor(http: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {**query, "limit": "5", **({"cursor": cursor} if cursor else {})}
        r = await http.get(RESIDENCE_PATH, params=params)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next"]
        if cursor is None:
            return items


async def test_the_feeds_need_the_platform_s_token(
    sim: tuple[httpx.AsyncClient, TestServer],
) -> None:
    http, _ = sim
    for path in (RESIDENCE_PATH, DOSSIER_PATH):
        r = await http.get(path, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401


async def test_residence_changes_page_by_cursor_without_gaps_or_repeats(
    sim: tuple[httpx.AsyncClient, TestServer],
) -> None:
    http, server = sim
    items = await _all_by_cursor(http)
    assert [i["MaThayDoi"] for i in items] == [r["MaThayDoi"] for r in server.app[FEEDS].residence]
    times = [datetime.fromisoformat(i["ThoiDiemCapNhat"]) for i in items]
    assert times == sorted(times) and len(items) == 24


async def test_since_keeps_the_later_changes_and_as_of_what_held_then(
    sim: tuple[httpx.AsyncClient, TestServer],
) -> None:
    http, _ = sim
    every = await _all_by_cursor(http)
    cut = every[9]["ThoiDiemCapNhat"]
    assert await _all_by_cursor(http, since=cut) == every[10:]
    held = await _all_by_cursor(http, as_of="2026-11-03")
    latest: dict[str, dict[str, Any]] = {}
    for i in every:
        if i["ThoiDiemCapNhat"][:10] <= "2026-11-03":
            latest[i["SoDinhDanh"]] = i
    assert sorted(held, key=lambda i: i["MaThayDoi"]) == sorted(
        latest.values(), key=lambda i: i["MaThayDoi"]
    )
    assert len({i["SoDinhDanh"] for i in held}) == len(held)  # one per citizen


async def test_dossier_updates_page_by_number(sim: tuple[httpx.AsyncClient, TestServer]) -> None:
    http, _ = sim
    r = await http.get(DOSSIER_PATH, params={"per_page": "4"})
    pages = r.json()["pages"]
    assert (pages, r.json()["total"]) == (5, 18)
    seen = []
    for page in range(1, pages + 2):  # one past the last: empty
        r = await http.get(DOSSIER_PATH, params={"per_page": "4", "page": str(page)})
        seen += [i["MaCapNhat"] for i in r.json()["items"]]
    assert len(seen) == len(set(seen)) == 18


@pytest.mark.parametrize(
    "query",
    [{"since": "hôm qua"}, {"since": "2026-11-01T08:00:00"}, {"limit": "0"}, {"cursor": "x"}],
)
async def test_bad_parameters_are_refused(
    sim: tuple[httpx.AsyncClient, TestServer], query: dict[str, str]
) -> None:
    http, _ = sim
    r = await http.get(RESIDENCE_PATH, params=query)
    assert r.status_code == 400 and r.json()["MaLoi"] == "400"
