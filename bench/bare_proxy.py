"""The fastest plain aiohttp reverse proxy (bench/proxies.py row c, the Python ceiling):
one pooled ClientSession; method, path, query, headers and body forwarded; uvloop when
importable, as the gateway. No checks, no audit.

    .venv/bin/python -m bench.bare_proxy UPSTREAM_URL PORT
"""

import asyncio
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


async def proxy(request: web.Request) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    body = await request.read()
    url = UPSTREAM + request.path_qs
    async with SESSION[0].request(request.method, url, headers=headers, data=body) as r:
        answer = await r.read()
        out = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
        return web.Response(status=r.status, headers=out, body=answer)


async def pool(app: web.Application) -> AsyncIterator[None]:
    SESSION.append(aiohttp.ClientSession(auto_decompress=False))
    yield
    await SESSION[0].close()


UPSTREAM, SESSION = sys.argv[1].rstrip("/"), list[aiohttp.ClientSession]()
try:
    import uvloop

    loop, LOOP = uvloop.new_event_loop(), "uvloop"
except ImportError:
    loop, LOOP = asyncio.new_event_loop(), "asyncio"
if __name__ == "__main__":
    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_route("*", "/{tail:.*}", proxy)
    print(f"bare proxy on {LOOP}", flush=True)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[2]), loop=loop, print=None, access_log=None
    )
