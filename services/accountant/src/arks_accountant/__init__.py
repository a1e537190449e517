"""arks_accountant: exactly-once usage ledger, quota status and priced billing records.

Consumes UsageRecorded from JetStream ARKS_USAGE, applies each event once to the quota
counters in Valkey (see `arks_common.ledger`), keeps a durable copy in NATS KV
`arks-ledger`, writes ArksQuota status, publishes BillingRecord per event and
QuotaStateChanged notices. docs/accountant.md describes the design.
"""
