"""ArksQuota: token budgets (upstream) and a money budget with prices (Arks extension).

Upstream: `quotas` of prompt/response/total token limits, lifetime totals. Extensions:
`budget` (a decimal limit and currency), `prices` per endpoint (decimal strings per million
tokens), `resetPeriod` (lifetime, or daily / monthly calendar periods in UTC), and status
`budgetStatus` / `periodStart`. A quota needs `quotas` or `budget` (or both); upstream's
"quotas has at least one item" applies only when there is no budget.

Money is `decimal.Decimal`, written as strings ("0.15") so no float rounding ever enters a
bill; prices carry at most 12 decimal places. `price_version` fingerprints a price list so
billing records name the prices they were computed with.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from arks_common.resources.meta import (
    ArksBaseModel,
    ArksResource,
    Int64,
    ResourceStatus,
    Timestamp,
)

QuotaType = Literal["prompt", "response", "total"]
ResetPeriod = Literal["lifetime", "daily", "monthly"]

PRICE_PATTERN = r"^[0-9]+(\.[0-9]{1,12})?$"
AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
_PRICE_RE = re.compile(PRICE_PATTERN)
_AMOUNT_RE = re.compile(AMOUNT_PATTERN)
TOKENS_PER_PRICE_UNIT = 1_000_000


def _decimal_parser(pattern: re.Pattern[str], max_places: int | None) -> Any:
    rule = "a non-negative decimal string" + (
        f" with at most {max_places} decimal places" if max_places is not None else ""
    )

    def parse(value: object) -> Decimal:
        if isinstance(value, Decimal):
            text = format(value, "f")
            if value.is_finite() and pattern.match(text):
                return value
            raise ValueError(f"must be {rule} (got {value!r})")
        if isinstance(value, str) and pattern.match(value):
            return Decimal(value)
        hint = " (quote it in YAML)" if isinstance(value, int | float) else ""
        raise ValueError(f'must be {rule}, such as "0.15"{hint} (got {value!r})')

    return parse


def _format_decimal(value: Decimal) -> str:
    return format(value, "f")


#: A price or limit: a non-negative decimal string with at most 12 decimal places.
Money = Annotated[
    Decimal,
    PlainValidator(_decimal_parser(_PRICE_RE, 12)),
    PlainSerializer(_format_decimal, return_type=str),
    WithJsonSchema({"type": "string", "pattern": PRICE_PATTERN}),
]
#: An accumulated amount (any number of decimal places), e.g. money spent.
Amount = Annotated[
    Decimal,
    PlainValidator(_decimal_parser(_AMOUNT_RE, None)),
    PlainSerializer(_format_decimal, return_type=str),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN}),
]

_CURRENCY = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.")


class QuotaItem(ArksBaseModel):
    """A token budget of one type."""

    type: QuotaType = Field(description="prompt, response or total tokens.")
    value: Int64 = Field(ge=0, description="Tokens allowed per period (>= 0).")


class Budget(ArksBaseModel):
    """Arks extension: a money budget per period."""

    limit: Money = Field(description='Money allowed per period, a decimal string ("25.00").')
    currency: str = _CURRENCY


class Price(ArksBaseModel):
    """Arks extension: the price of one endpoint's tokens, per million tokens."""

    endpoint: str = Field(min_length=1, description="ArksEndpoint (public model name).")
    prompt: Money = Field(description="Price per million prompt tokens not served from cache.")
    cached_prompt: Money | None = Field(
        None, description="Price per million cached prompt tokens; the prompt price when omitted."
    )
    completion: Money = Field(description="Price per million completion tokens.")

    @property
    def cached_prompt_price(self) -> Decimal:
        """`cachedPrompt`, else `prompt`."""
        return self.prompt if self.cached_prompt is None else self.cached_prompt

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0
    ) -> Decimal:
        """Exact cost of one request. `prompt_tokens` includes the cached ones (OpenAI usage)."""
        if min(prompt_tokens, completion_tokens, cached_prompt_tokens) < 0:
            raise ValueError("token counts must be >= 0")
        uncached = max(prompt_tokens - cached_prompt_tokens, 0)
        cached = prompt_tokens - uncached
        total = (
            uncached * self.prompt
            + cached * self.cached_prompt_price
            + completion_tokens * self.completion
        )
        return total / TOKENS_PER_PRICE_UNIT


def _canonical(value: Decimal) -> str:
    # "0.50" and "0.5" are the same price: normalise before hashing.
    return format(value.normalize(), "f") if value else "0"


def price_version(prices: Sequence[Price]) -> str:
    """A short, stable fingerprint (sha256, 16 hex) of a price list, order-insensitive.

    Prices equal as numbers give the same version; an omitted cachedPrompt equals an
    explicit one at the prompt price.
    """
    canonical = sorted(
        [
            p.endpoint,
            _canonical(p.prompt),
            _canonical(p.cached_prompt_price),
            _canonical(p.completion),
        ]
        for p in prices
    )
    blob = json.dumps(canonical, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class ArksQuotaSpec(ArksBaseModel):
    """Desired state of an ArksQuota: token budgets and/or a money budget."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["quotas"], "properties": {"quotas": {"minItems": 1}}},
                {"required": ["budget"]},
            ]
        }
    )

    quotas: list[QuotaItem] = Field(
        default_factory=list,
        description="Token budgets, each type at most once; at least one unless budget is set.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    budget: Budget | None = Field(None, description="Arks extension: money budget per period.")
    prices: list[Price] = Field(
        default_factory=list,
        description="Arks extension: prices per endpoint, used to charge the budget and to "
        "price billing records.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["endpoint"],
        },
    )
    reset_period: ResetPeriod = Field(
        "lifetime",
        description="Arks extension: lifetime (never resets, as upstream), daily or monthly "
        "(calendar periods in UTC).",
    )

    @field_validator("quotas")
    @classmethod
    def _one_quota_per_type(cls, quotas: list[QuotaItem]) -> list[QuotaItem]:
        _no_repeats([q.type for q in quotas], "type")
        return quotas

    @field_validator("prices")
    @classmethod
    def _one_price_per_endpoint(cls, prices: list[Price]) -> list[Price]:
        _no_repeats([p.endpoint for p in prices], "endpoint")
        return prices

    @model_validator(mode="after")
    def _quotas_or_budget(self) -> Self:
        if not self.quotas and self.budget is None:
            raise ValueError(
                "quotas: an ArksQuota needs at least one of quotas (token budgets) or budget "
                "(a money budget)"
            )
        return self

    def limit(self, type_: QuotaType) -> int | None:
        """The token budget of one type, or None when that type is unlimited."""
        return next((q.value for q in self.quotas if q.type == type_), None)

    def price_for(self, endpoint: str) -> Price | None:
        """The price of an endpoint's tokens, or None (free)."""
        return next((p for p in self.prices if p.endpoint == endpoint), None)

    def price_version(self) -> str:
        """`price_version(self.prices)`."""
        return price_version(self.prices)

    def period_start(self, now: datetime) -> datetime | None:
        """Start of the period containing `now` (UTC); None for lifetime quotas."""
        now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
        if self.reset_period == "daily":
            return now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.reset_period == "monthly":
            return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return None


def _no_repeats(keys: list[str], what: str) -> None:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise ValueError(f"[{index}].{what}: {key!r} is listed twice")
        seen.add(key)


class QuotaUsage(ArksBaseModel):
    """Tokens used so far of one quota type (upstream QuotaStatus)."""

    type: QuotaType = Field(description="prompt, response or total.")
    used: Int64 = Field(description="Tokens used in the current period.")
    last_update_time: Timestamp | None = Field(None, description="When `used` was last written.")


class BudgetStatus(ArksBaseModel):
    """Arks extension: money spent in the current period."""

    spent: Amount = Field(description='Money spent, a decimal string ("3.141500").')
    currency: str = _CURRENCY
    last_update_time: Timestamp | None = Field(None, description="When `spent` was last written.")


class ArksQuotaStatus(ResourceStatus):
    """Observed state of an ArksQuota (written by the accountant)."""

    quota_status: list[QuotaUsage] = Field(
        default_factory=list, description="Usage per quota type."
    )
    budget_status: BudgetStatus | None = Field(None, description="Arks extension: money spent.")
    period_start: Timestamp | None = Field(
        None, description="Arks extension: start of the current period (daily/monthly)."
    )

    def used(self, type_: QuotaType) -> int:
        """Tokens used of one type (0 when not reported yet)."""
        return next((u.used for u in self.quota_status if u.type == type_), 0)


class ArksQuota(ArksResource[ArksQuotaSpec, ArksQuotaStatus]):
    """ArksQuota is a token and/or money budget shared by the tokens that reference it."""

    kind: Literal["ArksQuota"] = Field("ArksQuota", description="Always ArksQuota.")
