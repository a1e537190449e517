"""Stage 5 of a batch: the billing record of each settled event, and its publication.

An event applied by this settlement is billed at the charge it was applied with. A
duplicate (applied before; its earlier record may have been lost) is billed again
exactly as its done-marker says it was charged: same period, and the price list of the
marker's price version — the current one, one the batch's accounts carry, or an old one
read back from Valkey (kept there by SETTLE; cached here). Only events whose ledger
entry was written are published (`BillingPublisher`: all in flight at once, each
confirmed by the stream; duplicates dropped by `Nats-Msg-Id`).

Failure modes: a price list gone from Valkey leaves that duplicate without a record (an
error is logged: its record was published when it was applied); Valkey unreachable
while reading one raises RetryableError (the batch is held and retried); a record the
stream did not confirm is reported as not billed (its event is nak'ed and comes back).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis
import redis.exceptions

from arks_accountant import keys
from arks_accountant.pricing import UNPRICED, Charge, PriceList, bill_for, charge
from arks_accountant.publishing import Bill, BillingPublisher
from arks_accountant.settling import Marker, PricedEvent
from arks_common.errors import RetryableError

log = logging.getLogger(__name__)

_PRICE_LISTS_CACHED = 1000


class Biller:
    """Builds and publishes the billing records of settled batches."""

    def __init__(self, redis: aioredis.Redis, publisher: BillingPublisher) -> None:
        self._redis = redis
        self._publisher = publisher
        self._price_lists: dict[tuple[str, str, str], PriceList] = {}

    async def records(
        self,
        priced: Sequence[PricedEvent],
        previous: Sequence[Marker | None],
        prices: dict[keys.Account, dict[str, PriceList]],
    ) -> list[Bill | None]:
        """Per event, its record (None: a duplicate whose price list is gone).
        `prices` (per account, by version) gains the old price lists read."""
        records: list[Bill | None] = []
        for p, before in zip(priced, previous, strict=True):
            if before is None:
                records.append(bill_for(p.event, p.period, p.charge))
            else:
                records.append(await self._rebill(p, before, prices[p.account]))
        return records

    async def publish(
        self,
        priced: Sequence[PricedEvent],
        records: Sequence[Bill | None],
        recorded: Mapping[keys.Account, bool],
    ) -> dict[int, bool]:
        """Publish the records of events whose entries were written; per index into
        `priced`, whether the stream stored it (absent: not published)."""
        to_bill = [
            (i, r)
            for i, (p, r) in enumerate(zip(priced, records, strict=True))
            if r is not None and recorded[p.account]
        ]
        stored = await self._publisher.publish([r for _, r in to_bill])
        return {i: ok for (i, _), ok in zip(to_bill, stored, strict=True)}

    async def _rebill(
        self, p: PricedEvent, previous: Marker, known: dict[str, PriceList]
    ) -> Bill | None:
        """The billing record of an event applied earlier, priced as it was then."""
        version = previous.price_version
        cost: Charge
        if version == p.charge.price_version:
            cost = p.charge
        else:
            prices = known.get(version) or await self._price_list(p.account, version)
            if prices is None:
                log.error(
                    "cannot re-bill %s: price list %r is gone; its record was published when "
                    "it was applied",
                    p.event.id,
                    version,
                )
                return None
            known[version] = prices
            cost = charge(p.event, prices)
        if cost.nanos != previous.nanos:
            log.error(
                "re-billing %s gives %s nanos, %s were counted",
                p.event.id,
                cost.nanos,
                previous.nanos,
            )
        return bill_for(p.event, previous.period, cost)

    async def _price_list(self, account: keys.Account, version: str) -> PriceList | None:
        if not version or account.quota is None:
            return UNPRICED if not version else None
        cache_key = (account.namespace, account.quota, version)
        if cache_key in self._price_lists:
            return self._price_lists[cache_key]
        try:
            raw = await self._redis.get(keys.prices_key(account.namespace, account.quota, version))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RetryableError(f"valkey unavailable: {exc}") from exc
        if raw is None:
            return None
        prices = PriceList.from_json(raw)
        if len(self._price_lists) > _PRICE_LISTS_CACHED:
            self._price_lists.clear()
        self._price_lists[cache_key] = prices
        return prices
