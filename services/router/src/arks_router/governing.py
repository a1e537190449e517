"""Admission and settlement against Redis/Valkey: the exact part of governance.

`Governor.admit()` runs one Lua script (`scripts.ADMIT`) that checks and charges every
rate-limit window of the grant and reserves the quota in this router's name (ledger
steps 1 and 5), or charges nothing and says which limit refused. A quota refuses in
one of two ways: 429 `rate_limit_exceeded` with a Retry-After when only reservations
in flight fill it (they settle within seconds, or are released when their router's
lease lapses), `insufficient_quota` when its used budget leaves no room for the
request. It answers with the OpenAI rate-limit headers either way.
`Governor.settle()` corrects the token windows by (actual - reserved) when the
response has ended; the quota itself is settled by the accountant from the usage
event (ledger step 3).

Failure modes: Redis unreachable, slow (socket timeout) or erroring is a
`RedisUnavailable`; after one, Redis is skipped for `breaker_seconds` so a dead server
does not add a timeout to every request. What happens then is the operator's choice
(`redis.fail_mode`): `closed` refuses with 503 `governance_unavailable`, `open`
admits without charging (the usage event is still published, so the quota is still
billed by the accountant; only the windows are not enforced). Scripts are never
retried on a connection error: the first attempt may have run, and a second would
charge twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from arks_common import ledger
from arks_common.events import QuotaSpec
from arks_router import api_errors, limits, pipelining, scripts
from arks_router.estimating import Estimate
from arks_router.settings import RouterSettings

log = logging.getLogger(__name__)

_REDIS_ERRORS = (ConnectionError, TimeoutError, OSError, pipelining.ReplyError)
_ADMIT = pipelining.Script(scripts.ADMIT)
_SETTLE = pipelining.Script(scripts.SETTLE)


class RedisUnavailable(Exception):
    """Redis/Valkey could not run the script (down, slow, or answering errors)."""


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    namespace: str
    name: str
    period: str
    kinds: Sequence[tuple[str, int, int]]
    """(kind, limit, estimate) of each limited kind."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one admission checks and charges."""

    request_id: str
    namespace: str
    token_name: str
    endpoint: str
    rules: Sequence[limits.Rule]
    estimate: Estimate
    quota: QuotaPlan | None = None


@dataclass(slots=True)
class Charge:
    """A token window charged at admission, to be corrected at settlement."""

    key: str
    rule: limits.Rule
    bucket: int
    reserved: int


@dataclass(slots=True)
class Admission:
    charged: bool
    """False when Redis was skipped (fail-open): nothing to settle."""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    token_charges: list[Charge] = field(default_factory=list)
    reserved_tokens: int = 0


def quota_plan(spec: QuotaSpec, endpoint: str, estimate: Estimate, period: str) -> QuotaPlan:
    """The limited kinds of a quota with this request's estimate of each (ledger step 1)."""
    estimates = {
        "prompt": estimate.prompt_tokens,
        "response": estimate.completion_tokens,
        "total": estimate.total_tokens,
    }
    kinds: list[tuple[str, int, int]] = [
        (limit.type, limit.value, estimates[limit.type]) for limit in spec.limits
    ]
    if spec.budget_nanos is not None:
        price = spec.price_for(endpoint)
        cost = 0
        if price is not None:
            cost = ledger.to_nanos(
                ledger.token_cost(estimate.prompt_tokens, price.prompt)
                + ledger.token_cost(estimate.completion_tokens, price.completion)
            )
        kinds.append((ledger.QuotaKind.COST.value, spec.budget_nanos, cost))
    # One limit per kind: the strictest, as for rate limits.
    strictest: dict[str, tuple[str, int, int]] = {}
    for kind in kinds:
        if kind[0] not in strictest or kind[1] < strictest[kind[0]][1]:
            strictest[kind[0]] = kind
    return QuotaPlan(spec.namespace, spec.name, period, list(strictest.values()))


def connect(settings: RouterSettings) -> pipelining.PipelinedRedis:
    redis = settings.redis
    return pipelining.PipelinedRedis(
        redis.url,
        timeout=redis.socket_timeout,
        username=redis.username,
        password=redis.password.get_secret_value() if redis.password else None,
    )


class Governor:
    def __init__(
        self,
        client: pipelining.PipelinedRedis,
        settings: RouterSettings,
        *,
        router_id: str,
        clock: Callable[[], float] = time.monotonic,
        on_unavailable: Callable[[], None] | None = None,
    ) -> None:
        self._redis = client
        self._settings = settings
        self._router_id = router_id
        """Named in every reservation: the lease (`arks_router.leasing`) that keeps them."""
        self._clock = clock
        self._down_until = 0.0
        self._on_unavailable = on_unavailable

    @property
    def fail_open(self) -> bool:
        return self._settings.redis.fail_mode == "open"

    @property
    def available(self) -> bool:
        return self._clock() >= self._down_until

    # ------------------------------------------------------------------ admission
    async def admit(self, plan: Plan) -> Admission:
        """Admit and charge, or raise ApiError(429 / 503)."""
        if not plan.rules and plan.quota is None:
            return Admission(charged=True, reserved_tokens=plan.estimate.total_tokens)
        tag = limits.slot_tag(
            plan.namespace, plan.token_name, plan.endpoint, plan.quota.name if plan.quota else None
        )
        keys = [
            limits.window_key(tag, plan.namespace, plan.token_name, plan.endpoint, rule.type)
            for rule in plan.rules
        ]
        costs = [self._cost(rule, plan.estimate) for rule in plan.rules]
        argv: list[Any] = [plan.request_id, len(plan.rules), 0, "", 0, self._router_id]
        for rule, cost in zip(plan.rules, costs, strict=True):
            argv += [rule.bucket_ms, rule.buckets, rule.limit, cost]
        quota = plan.quota
        if quota is not None and quota.kinds:
            argv[2] = len(quota.kinds)
            argv[3] = quota.period
            argv[4] = int(
                self._settings.governance.reservation_timeout_seconds
                + ledger.RESERVATION_GRACE_SECONDS
            )
            for kind, limit, estimate in quota.kinds:
                keys.append(ledger.used_key(quota.namespace, quota.name, quota.period, kind))
                keys.append(ledger.reserved_key(quota.namespace, quota.name, quota.period, kind))
                argv += [kind, limit, estimate]
            keys.append(ledger.reservation_key(quota.namespace, quota.name, plan.request_id))
            keys.append(ledger.reservation_index_key(quota.namespace, quota.name))
            keys.append(ledger.reservation_routers_key(quota.namespace, quota.name))
        reply = await self._run(self._redis.evalsha(_ADMIT, keys, argv))
        if reply is None:
            return Admission(charged=False)
        values = [int(v) for v in cast(list[Any], reply)]
        admitted, denied, retry_ms, held = values[0], values[1], values[2], values[3]
        per_rule = [values[4 + 3 * i : 7 + 3 * i] for i in range(len(plan.rules))]
        headers = _rate_headers(plan.rules, per_rule)
        if not admitted:
            if denied > 0:
                raise _rate_limited(plan.rules[denied - 1], retry_ms, headers)
            assert quota is not None
            kind = quota.kinds[-denied - 1][0]
            if held:
                retry = self._settings.governance.reserved_retry_after_seconds
                raise _quota_held(quota, kind, retry, headers)
            raise _quota_exhausted(quota, kind)
        charges = [
            Charge(key, rule, per_rule[i][2], cost)
            for i, (key, rule, cost) in enumerate(
                zip(keys[: len(plan.rules)], plan.rules, costs, strict=True)
            )
            if rule.unit is limits.Unit.TOKENS
        ]
        return Admission(
            charged=True,
            headers=headers,
            token_charges=charges,
            reserved_tokens=plan.estimate.total_tokens,
        )

    @staticmethod
    def _cost(rule: limits.Rule, estimate: Estimate) -> int:
        if rule.unit is limits.Unit.REQUESTS:
            return 1
        # A request larger than the whole window reserves the window: it is admitted
        # when the window is empty, and settlement charges what it really used.
        return min(estimate.total_tokens, rule.limit)

    # ------------------------------------------------------------------ settlement
    async def settle(self, admission: Admission, actual_total: int) -> None:
        """Correct the token windows by (actual - reserved); never raises."""
        charges = [c for c in admission.token_charges if c.reserved != actual_total]
        if not admission.charged or not charges:
            return
        keys = [c.key for c in charges]
        argv: list[Any] = []
        for charge in charges:
            argv += [
                charge.rule.bucket_ms,
                charge.rule.buckets,
                charge.bucket,
                actual_total - charge.reserved,
            ]
        # Settlement never refuses anything, so it always "fails open": a correction
        # lost to an outage only leaves the reservation standing until it slides out.
        await self._run(self._redis.evalsha(_SETTLE, keys, argv), fail_open=True)

    # ------------------------------------------------------------------ plumbing
    async def _run(self, call: Awaitable[Any], *, fail_open: bool | None = None) -> Any | None:
        """The script's reply; None when Redis is unavailable and we fail open."""
        open_ = self.fail_open if fail_open is None else fail_open
        if not self.available:
            _close(call)
            self._unavailable(open_)
            return None
        try:
            return await call
        except _REDIS_ERRORS as exc:
            log.warning(
                "redis unavailable for %.1fs: %r", self._settings.redis.breaker_seconds, exc
            )
            self._down_until = self._clock() + self._settings.redis.breaker_seconds
            self._unavailable(open_)
            return None

    def _unavailable(self, open_: bool) -> None:
        """Count the outage; raise 503 unless failing open."""
        if self._on_unavailable is not None:
            self._on_unavailable()
        if not open_:
            raise api_errors.governance_unavailable()


def _close(call: Awaitable[Any]) -> None:
    close = getattr(call, "close", None)
    if close is not None:
        close()


def _rate_headers(
    rules: Sequence[limits.Rule], per_rule: Sequence[Sequence[int]]
) -> list[tuple[bytes, bytes]]:
    """x-ratelimit-{limit,remaining,reset}-{requests,tokens}: the tightest rule of each unit."""
    headers: list[tuple[bytes, bytes]] = []
    for unit in (limits.Unit.REQUESTS, limits.Unit.TOKENS):
        best: tuple[limits.Rule, int, int] | None = None
        for rule, (remaining, reset_ms, _) in zip(rules, per_rule, strict=True):
            if rule.unit is unit and (best is None or remaining < best[1]):
                best = (rule, remaining, reset_ms)
        if best is None:
            continue
        rule, remaining, reset_ms = best
        suffix = unit.value.encode()
        headers.append((b"x-ratelimit-limit-" + suffix, str(rule.limit).encode()))
        headers.append((b"x-ratelimit-remaining-" + suffix, str(remaining).encode()))
        headers.append((b"x-ratelimit-reset-" + suffix, duration(reset_ms).encode()))
    return headers


def duration(ms: int) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `1h2m3s`, `120ms`."""
    ms = max(0, ms)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000.0
    hours, rest = divmod(int(seconds), 3600)
    minutes = rest // 60
    secs = seconds - hours * 3600 - minutes * 60
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _rate_limited(
    rule: limits.Rule, retry_ms: int, headers: list[tuple[bytes, bytes]]
) -> api_errors.ApiError:
    what = "requests" if rule.unit is limits.Unit.REQUESTS else "tokens"
    window = "minute" if rule.window_ms == limits.MINUTE_MS else "day"
    return api_errors.ApiError(
        429,
        f"Rate limit reached: {rule.limit} {what} per {window} ({rule.type}). "
        f"Retry after {max(1, round(retry_ms / 1000 + 0.499))}s.",
        code="rate_limit_exceeded",
        type=what,
        param=rule.type,
        headers=headers,
        retry_after=max(retry_ms, 1) / 1000.0,
    )


def _quota_held(
    quota: QuotaPlan, kind: str, retry_after: float, headers: list[tuple[bytes, bytes]]
) -> api_errors.ApiError:
    """The quota has room once requests in flight settle: retryable, as a rate limit."""
    return api_errors.ApiError(
        429,
        f"The quota '{quota.name}' is held by requests in flight ({kind}): its used budget "
        f"leaves room for this request once they finish. Retry after {retry_after:g}s.",
        code="rate_limit_exceeded",
        type="tokens",
        param=kind,
        headers=headers,
        retry_after=retry_after,
    )


def _quota_exhausted(quota: QuotaPlan, kind: str) -> api_errors.ApiError:
    start_next = _next_period_seconds(quota.period)
    return api_errors.ApiError(
        429,
        f"The quota '{quota.name}' has no {kind} budget left for this request"
        + (" in this period." if start_next is not None else "."),
        code="insufficient_quota",
        type="insufficient_quota",
        param=kind,
        retry_after=start_next,
    )


def _next_period_seconds(period: str) -> float | None:
    """Seconds until the next period starts (None for lifetime quotas)."""
    now = datetime.now(UTC)
    if period.startswith("d"):
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    elif period.startswith("m"):
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = (first + timedelta(days=32)).replace(day=1)
    else:
        return None
    return (start - now).total_seconds()
