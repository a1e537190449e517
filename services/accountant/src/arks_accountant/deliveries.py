"""Messages delivered by the durable consumer, as the wire hands them over: raw bytes.

A `Delivery` keeps the subject, the ack subject (`reply`), the raw header block and the
payload; headers are looked up on demand and the JetStream metadata (delivery count,
stream sequence) is read from the ack subject, as nats-py does. `Delivery.of()` wraps a
nats-py message the same way (tests fetch with nats-py).

Failure modes: none here; an ack subject that is not a JetStream one reads as a first
delivery with sequence 0 (such a message cannot be acked anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.msg import Msg

_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0"
_V1_TOKENS = 9


@dataclass(slots=True)
class Delivery:
    subject: bytes
    reply: bytes
    """The JetStream ack subject `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`."""
    headers: bytes
    """The raw header block (`NATS/1.0\\r\\nName: value\\r\\n...\\r\\n`), or b""."""
    data: bytes

    def header(self, name: bytes) -> str | None:
        """The last value of header `name` (exact case, as nats-py), or None."""
        raw = self.headers
        if not raw:
            return None
        key = _CRLF + name + b":"
        at = raw.rfind(key)
        if at < 0:
            return None
        start = at + len(key)
        return raw[start : raw.find(_CRLF, start)].strip().decode("utf-8", "replace")

    def header_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.headers.split(_CRLF)[1:]:
            name, sep, value = line.partition(b":")
            if sep and name.strip():
                out[name.strip().decode("ascii", "replace")] = value.strip().decode(
                    "utf-8", "replace"
                )
        return out

    def _ack_token(self, index: int) -> int:
        tokens = self.reply.split(b".")
        if len(tokens) != _V1_TOKENS:
            index += 2  # v2 subjects add the domain and the account hash
        try:
            return int(tokens[index])
        except (IndexError, ValueError):
            return 0

    @property
    def num_delivered(self) -> int:
        return max(1, self._ack_token(4))

    @property
    def stream_sequence(self) -> int:
        return self._ack_token(5)

    @classmethod
    def of(cls, msg: Msg) -> Delivery:
        headers = b""
        if msg.headers:
            lines = [_HEADER_LINE]
            lines.extend(f"{k}: {v}".encode() for k, v in msg.headers.items())
            headers = _CRLF.join(lines) + _CRLF + _CRLF
        return cls(msg.subject.encode(), (msg.reply or "").encode(), headers, msg.data)
