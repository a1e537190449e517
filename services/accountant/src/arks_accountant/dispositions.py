"""Stage 7 of a batch: what each settled event's message gets — ack or nak.

- Ack: its ledger entry was written and its billing record stored (or it has none: a
  duplicate whose price list is gone, logged when re-billed).
- Nak (0.5 s): its ledger entry was not written (another epoch: the restore gate was
  invalidated; redelivered, it is applied afresh after the restore).
- Nak (1 s): recorded but its billing record was not stored; it comes back, is found
  applied and billed again. Its done-marker is returned as *held*: the lane keeps it in
  its ledger writes until the ack floor passes it (no PING can confirm a nak).

The consumer lane writes the acks after the handler returns. No I/O, no failure modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from arks_accountant import keys
from arks_accountant.lanes import BatchMarkers
from arks_accountant.publishing import Bill
from arks_accountant.settling import PricedEvent
from arks_common.messaging import Ack, Disposition, Nak

_ACK = Ack()


def dispositions(
    priced: Sequence[PricedEvent],
    records: Sequence[Bill | None],
    recorded: Mapping[keys.Account, bool],
    billed: Mapping[int, bool],
    batch: BatchMarkers,
) -> tuple[list[Disposition], dict[str, dict[str, str]]]:
    """Per event its disposition; and the held markers, per ledger key."""
    out: list[Disposition] = []
    held: dict[str, dict[str, str]] = {}
    for i, p in enumerate(priced):
        if not recorded[p.account]:
            out.append(Nak(0.5))
        elif records[i] is None or billed.get(i, False):
            out.append(_ACK)
        else:
            out.append(Nak(1.0))
            marker = batch.markers[p.account][p.event.id]
            held.setdefault(p.account.ledger_key, {})[p.event.id] = marker
    return out, held
