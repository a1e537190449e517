"""Every NATS name Arks uses: streams, subjects, durable consumers and KV buckets.

This module is the only place such strings may appear; services build subjects with
the functions below so that a rename is one edit and a grep finds every user.

Subject tokens are made from Kubernetes names. Namespaces are DNS labels (no dots),
but object names may be DNS subdomains, and a dot would split a NATS token in two and
break wildcard semantics, so names pass through `token()`, which maps "." to "=" (a
character Kubernetes names never contain, so the mapping is reversible). KV keys
allow dots, so they use names as they are.
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------------------- streams
USAGE_STREAM: Final = "ARKS_USAGE"
"""One UsageRecorded per finished request; deduplicated by Nats-Msg-Id = request id."""
BILLING_STREAM: Final = "ARKS_BILLING"
"""One BillingRecord per applied usage event, for billing systems."""
MODEL_JOBS_STREAM: Final = "ARKS_MODEL_JOBS"
"""Work queue of model download requests (work-queue retention)."""
MODEL_EVENTS_STREAM: Final = "ARKS_MODEL_EVENTS"
"""Progress and result events of model downloads."""
RESOURCE_EVENTS_STREAM: Final = "ARKS_RESOURCE_EVENTS"
"""ResourceStatusChanged events: the history `arks describe` shows."""
DLQ_STREAM: Final = "ARKS_DLQ"
"""Messages a consumer could not process, with the reason in a header."""

# ---------------------------------------------------------------------------- subject roots
USAGE_ROOT: Final = "arks.usage"
BILLING_ROOT: Final = "arks.billing"
MODEL_JOBS_ROOT: Final = "arks.models.jobs"
MODEL_PROGRESS_ROOT: Final = "arks.models.progress"
MODEL_RESULT_ROOT: Final = "arks.models.result"
RESOURCE_STATUS_ROOT: Final = "arks.resources.status"
LOAD_ROOT: Final = "arks.load"
QUOTA_STATE_ROOT: Final = "arks.quota.state"
DLQ_ROOT: Final = "arks.dlq"

USAGE_ALL: Final = f"{USAGE_ROOT}.>"
BILLING_ALL: Final = f"{BILLING_ROOT}.>"
MODEL_JOBS_ALL: Final = f"{MODEL_JOBS_ROOT}.>"
MODEL_PROGRESS_ALL: Final = f"{MODEL_PROGRESS_ROOT}.>"
MODEL_RESULT_ALL: Final = f"{MODEL_RESULT_ROOT}.>"
RESOURCE_STATUS_ALL: Final = f"{RESOURCE_STATUS_ROOT}.>"
LOAD_ALL: Final = f"{LOAD_ROOT}.>"
QUOTA_STATE_ALL: Final = f"{QUOTA_STATE_ROOT}.>"
DLQ_ALL: Final = f"{DLQ_ROOT}.>"

# ---------------------------------------------------------------------------- consumers
ACCOUNTANT_CONSUMER: Final = "arks-accountant-usage"
"""Durable pull consumer on ARKS_USAGE shared by every accountant process."""
MODEL_CACHE_CONSUMER: Final = "arks-model-cache-jobs"
"""Durable pull consumer on ARKS_MODEL_JOBS shared by every model-cache process."""
RECONCILER_MODEL_EVENTS_CONSUMER: Final = "arks-reconciler-model-events"
"""Durable consumer the reconciler reads model progress/results with."""

# ---------------------------------------------------------------------------- KV buckets
RESOURCES_BUCKET: Final = "arks-resources"
"""Local platform: the arks.ai/v1 objects, key `<plural>.<namespace>.<name>`."""
ROUTES_BUCKET: Final = "arks-routes"
"""Route table per endpoint, key `<namespace>.<endpoint>`."""
TOKENS_BUCKET: Final = "arks-tokens"
"""Token grants, key = sha256 hex of the bearer token (never the token itself)."""
QUOTAS_BUCKET: Final = "arks-quotas"
"""Quota specs (limits, prices, period), key `<namespace>.<quota>`."""
QUOTA_STATE_BUCKET: Final = "arks-quota-state"
"""Latest QuotaStateChanged per quota, key `<namespace>.<quota>`, so new routers start informed."""
LEDGER_BUCKET: Final = "arks-ledger"
"""Accountant's durable copy of quota counters, used to restore Redis/Valkey after data loss."""
REPLICAS_BUCKET: Final = "arks-replicas"
"""Local platform: the replica processes the reconciler runs (for adoption after restart)."""

# ---------------------------------------------------------------------------- helpers


def token(name: str) -> str:
    """A Kubernetes name as one NATS subject token (dots are not allowed inside tokens)."""
    if not name:
        raise ValueError("a subject token cannot be empty")
    return name.replace(".", "=")


def untoken(value: str) -> str:
    """Inverse of `token()`."""
    return value.replace("=", ".")


def usage_subject(namespace: str, endpoint: str) -> str:
    return f"{USAGE_ROOT}.{token(namespace)}.{token(endpoint)}"


def billing_subject(namespace: str, *, quota: str | None, token_name: str) -> str:
    """Billing records go by namespace and quota; requests without a quota go by token.

    Subscribers use `arks.billing.<ns>.quota.>` / `arks.billing.<ns>.token.>` or `arks.billing.>`.
    """
    if quota:
        return f"{BILLING_ROOT}.{token(namespace)}.quota.{token(quota)}"
    return f"{BILLING_ROOT}.{token(namespace)}.token.{token(token_name)}"


def model_job_subject(namespace: str, model: str) -> str:
    return f"{MODEL_JOBS_ROOT}.{token(namespace)}.{token(model)}"


def model_progress_subject(namespace: str, model: str) -> str:
    return f"{MODEL_PROGRESS_ROOT}.{token(namespace)}.{token(model)}"


def model_result_subject(namespace: str, model: str) -> str:
    return f"{MODEL_RESULT_ROOT}.{token(namespace)}.{token(model)}"


def resource_status_subject(kind: str, namespace: str, name: str) -> str:
    return f"{RESOURCE_STATUS_ROOT}.{token(kind)}.{token(namespace)}.{token(name)}"


def load_subject(namespace: str, application: str) -> str:
    return f"{LOAD_ROOT}.{token(namespace)}.{token(application)}"


def quota_state_subject(namespace: str, quota: str) -> str:
    return f"{QUOTA_STATE_ROOT}.{token(namespace)}.{token(quota)}"


def dlq_subject(stream: str) -> str:
    return f"{DLQ_ROOT}.{token(stream.lower())}"


def resource_key(plural: str, namespace: str, name: str) -> str:
    return f"{plural}.{namespace}.{name}"


def namespaced_key(namespace: str, name: str) -> str:
    """KV key of the route, quota and quota-state buckets."""
    return f"{namespace}.{name}"


def split_namespaced_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition(".")
    return namespace, name
