"""Limits hold exactly across router processes (the property no peer has)."""

from __future__ import annotations

import asyncio
import collections

import httpx

from arks_common.events import QuotaLimit
from arks_common.testing.builders import make_quota_spec

TOKEN = "sk-exact"
QUOTA_TOKEN = "sk-exact-quota"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def _storm(urls: list[str], requests: int, token: str) -> list[httpx.Response]:
    auth = {"authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        return await asyncio.gather(
            *(
                http.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=BODY, headers=auth)
                for i in range(requests)
            )
        )


async def test_two_router_processes_hold_rpm_exactly_and_quota_within_reservations(
    sims, routers, state, usage, redis
):
    url = await sims.start("m")
    await state.route("m", [url])
    await state.token(TOKEN, ["m"], rpm=37)
    await state.quota(make_quota_spec(name="small", limits=[QuotaLimit(type="total", value=500)]))
    await state.token(QUOTA_TOKEN, ["m"], name="quota-tok", quota="small")
    first, second = await asyncio.gather(routers.spawn(), routers.spawn())

    # rpm: exactly the limit is admitted, whatever process a request reaches.
    answers = await _storm([first.url, second.url], 150, TOKEN)
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses == {200: 37, 429: 113}
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.json()["error"]["code"] == "rate_limit_exceeded" for a in refused)
    assert all(1 <= int(a.headers["retry-after"]) <= 60 for a in refused)
    assert all(a.headers["x-ratelimit-remaining-requests"] == "0" for a in refused)
    # Both processes answered half of the storm: the limit was shared, not per process.
    assert collections.Counter(a.url.port for a in answers) == {
        httpx.URL(first.url).port: 75,
        httpx.URL(second.url).port: 75,
    }
    assert len(await usage.wait(37)) == 37

    # quota: reservations never exceed the budget, and every admitted request holds one.
    answers = await _storm([first.url, second.url], 80, QUOTA_TOKEN)
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses[200] > 0
    assert statuses[200] + statuses[429] == 80
    assert all(
        a.json()["error"]["code"] == "insufficient_quota" for a in answers if a.status_code == 429
    )
    reserved = int(await redis.get("arks:quota:{default/small}:lifetime:reserved:total"))
    assert reserved <= 500
    assert reserved % statuses[200] == 0  # identical requests reserve identical amounts
