from arks_accountant.testing import (
    expected_used,
    make_settings,
    publish_usage,
    put_spec,
    running_accountant,
    used,
    wait_for,
)
from arks_common.testing.builders import make_quota_spec, make_usage_event


async def test_applies_events(bus, redis, nats_server, valkey_server):
    await put_spec(bus, make_quota_spec())
    settings = make_settings(nats_server.url, valkey_server.url)
    usage = [make_usage_event(prompt_tokens=i, completion_tokens=2 * i) for i in range(1, 50)]
    async with running_accountant(settings):
        await publish_usage(bus, *usage)
        want = expected_used(usage)

        async def done():
            got = await used(redis, "default", "basic-quota")
            return {k: got[k] for k in want} == want

        await wait_for(done, what="totals")
