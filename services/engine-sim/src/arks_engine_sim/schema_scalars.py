"""Scalar JSON values for a JSON Schema: numbers within `minimum` / `maximum` (both
exclusive forms, draft 4's boolean flags too) that meet `multipleOf` exactly as
jsonschema checks it, and strings of common `format`s. Part of schema_values.py's
generator.

Failure mode: `Unsatisfiable` when the bounds admit no value or `multipleOf` cannot be
met within a few draws.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from typing import Any

SPAN = 100  # how far from a single given bound (or from 0) numbers range


class Unsatisfiable(ValueError):
    """No value can be generated for this schema (or not by this generator)."""


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    low: float | None = schema.get("minimum")
    high: float | None = schema.get("maximum")
    low_open = high_open = False
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if exclusive_low is True:  # draft 4: a flag on `minimum`
        low_open = True
    elif isinstance(exclusive_low, int | float) and (low is None or exclusive_low >= low):
        low, low_open = exclusive_low, True
    if exclusive_high is True:
        high_open = True
    elif isinstance(exclusive_high, int | float) and (high is None or exclusive_high <= high):
        high, high_open = exclusive_high, True
    return low, low_open, high, high_open


def number(schema: dict[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    given_low, low_open, given_high, high_open = _bounds(schema)
    fallback_low = 0.0 if given_high is None else given_high - SPAN
    low = fallback_low if given_low is None else given_low
    high = low + SPAN if given_high is None else given_high
    step = schema.get("multipleOf")
    if integer or isinstance(step, int):
        lo = math.floor(low) + 1 if low_open and float(low).is_integer() else math.ceil(low)
        hi = math.ceil(high) - 1 if high_open and float(high).is_integer() else math.floor(high)
        if isinstance(step, int | float) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first > last:
                raise Unsatisfiable("no multiple of multipleOf within the bounds")
            for _ in range(16):
                value = rng.randint(first, last) * step
                if integer and not float(value).is_integer():
                    continue
                if isinstance(value, int) or (value / step).is_integer():
                    return int(value) if integer else value
            raise Unsatisfiable("multipleOf cannot be met exactly")
        if lo > hi:
            raise Unsatisfiable("the bounds admit no integer")
        return rng.randint(lo, hi)
    if low > high or (low == high and (low_open or high_open)):
        raise Unsatisfiable("the bounds admit no number")
    if isinstance(step, float) and step > 0:
        first, last = math.ceil(low / step), math.floor(high / step)
        for _ in range(16):
            k = rng.randint(first, last) if first <= last else first
            value = k * step
            if low <= value <= high and (value / step).is_integer():
                return value
        raise Unsatisfiable("multipleOf cannot be met exactly")
    value = round(rng.uniform(low, high), 2)
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        value = (low + high) / 2
    return value


def formatted(fmt: object, rng: random.Random, word: Callable[[], str]) -> str | None:
    day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    if fmt == "date-time":
        return f"{day}T{clock}"
    if fmt == "date":
        return day
    if fmt == "time":
        return clock
    if fmt == "email":
        return f"{word()}@{word()}.example.com"
    if fmt in ("uri", "url", "iri", "uri-reference"):
        return f"https://{word()}.example.com/{word()}"
    if fmt in ("hostname", "idn-hostname"):
        return f"{word()}.example.com"
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if fmt == "ipv4":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    if fmt == "ipv6":
        return ":".join(f"{rng.getrandbits(16):x}" for _ in range(8))
    if fmt == "duration":
        return f"PT{rng.randint(1, 59)}M"
    return None
