"""Protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into JSON objects.

kubectl's generators (`kubectl create deployment|configmap|secret|service|job|role...`)
send their object in Kubernetes' protobuf encoding: the magic `k8s\\x00`, then a
runtime.Unknown message — typeMeta (1: apiVersion=1, kind=2), raw (2: the object's own
message), contentEncoding (3), contentType (4). `decode` reads the envelope and turns
`raw` into the JSON object upstream would produce from the same Go struct, through the
field table of `proto_messages`: camelCase names, int32/int64 as numbers, bytes as
base64, maps, IntOrString as a number or a string, Quantity as its string, Time and
MicroTime as RFC 3339 strings; zero scalars are left out unless the table keeps them
(pointers, fields without omitempty), empty messages stay (`resources: {}`).

The wire format is read by hand (varint, 64-bit, length-delimited and 32-bit fields).
Fields the table does not list are skipped; a kind it does not list raises `UnknownKind`
(the caller answers 415); a body that is not well-formed raises `ProtobufError` (400).
Responses are never protobuf: kubectl accepts JSON in return.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from arks_devcluster.proto_messages import KINDS, MESSAGES, Field

Obj = dict[str, Any]

MAGIC = b"k8s\x00"

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf message."""


class UnknownKind(ValueError):
    """A well-formed envelope of a kind the table does not describe."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f"{kind} ({api_version or 'no apiVersion'})")
        self.api_version = api_version
        self.kind = kind


def decoded_kinds() -> list[str]:
    """The kinds `decode` reads (of their apiVersion in `proto_messages.KINDS`), sorted."""
    return sorted(kind for kinds in KINDS.values() for kind in kinds)


def decode(body: bytes) -> Obj:
    """The JSON object of a protobuf request body, with apiVersion and kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic")
    api_version = kind = ""
    raw = b""
    for number, wire, value in fields(body[len(MAGIC) :]):
        if number == 1:
            for sub, sub_wire, sub_value in fields(_bytes(wire, value, "typeMeta")):
                if sub == 1:
                    api_version = _text(sub_wire, sub_value, "apiVersion")
                elif sub == 2:
                    kind = _text(sub_wire, sub_value, "kind")
        elif number == 2:
            raw = _bytes(wire, value, "raw")
    if kind not in KINDS.get(api_version, ()):
        raise UnknownKind(api_version, kind)
    return {"apiVersion": api_version, "kind": kind, **message(kind, raw)}


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a message, in order: a number
    for varint and fixed-size fields, the bytes of length-delimited ones."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"field number 0 at byte {pos}")
        value: int | bytes
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise ProtobufError("truncated fixed-size field")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        elif wire == BYTES:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise ProtobufError(f"truncated field {number}: {length} bytes announced")
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def message(name: str, data: bytes) -> Obj:
    """The JSON object of message `name` (of `proto_messages.MESSAGES`)."""
    table = MESSAGES[name]
    out: Obj = {}
    for number, wire, value in fields(data):
        field = table.get(number)
        if field is None:
            continue  # a field the dev cluster does not read
        if field.map:
            key, item = _entry(field, _bytes(wire, value, field.json))
            out.setdefault(field.json, {})[key] = item
        elif field.repeated:
            out.setdefault(field.json, []).append(_value(field, wire, value))
        elif field.json == "-":
            out.update(_value(field, wire, value))
        else:
            out[field.json] = _value(field, wire, value)
    for field in table.values():
        found = out.get(field.json, {})
        if found is None or (not field.keep and found in ("", 0)):
            del out[field.json]
    return out


def _value(field: Field, wire: int, value: int | bytes) -> Any:
    kind = field.type
    if kind in ("int", "bool"):
        if not isinstance(value, int) or wire != VARINT:
            raise ProtobufError(f"field {field.json}: wire type {wire}, expected a varint")
        return bool(value) if kind == "bool" else _signed(value)
    data = _bytes(wire, value, field.json)
    if kind == "string":
        return _text(wire, data, field.json)
    if kind == "bytes":
        return base64.b64encode(data).decode()
    if kind == "Quantity":
        return _Small(data, field.json).text(1) or "0"
    if kind == "IntOrString":
        small = _Small(data, field.json)
        return small.text(3) if small.number(1) == 1 else small.number(2)
    if kind in ("Time", "MicroTime"):
        small = _Small(data, field.json)
        return _time(small.number(1), small.number(2), micro=kind == "MicroTime")
    return message(kind, data)


def _entry(field: Field, data: bytes) -> tuple[str, Any]:
    """A map entry: key = 1 (a string), value = 2 (of the map's type)."""
    key, item = "", None
    for number, wire, value in fields(data):
        if number == 1:
            key = _text(wire, value, field.json)
        elif number == 2:
            item = _value(field, wire, value)
    if item is None:  # an entry without its value: the zero value (of strings, bytes...)
        item = _value(field, BYTES, b"")
    return key, item


class _Small:
    """A small message of strings and numbers: Quantity, IntOrString, Time."""

    def __init__(self, data: bytes, where: str) -> None:
        self.where = where
        self.values = {number: (wire, value) for number, wire, value in fields(data)}

    def number(self, number: int) -> int:
        wire, value = self.values.get(number, (VARINT, 0))
        if wire != VARINT or not isinstance(value, int):
            raise ProtobufError(f"field {self.where}: wire type {wire}, expected a varint")
        return _signed(value)

    def text(self, number: int) -> str:
        wire, value = self.values.get(number, (BYTES, b""))
        return _text(wire, value, self.where)


def _time(seconds: int, nanos: int, *, micro: bool) -> str | None:
    if seconds == 0 and nanos == 0:
        return None  # Go's zero time: null in JSON, left out here
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ProtobufError(f"a timestamp out of range: {seconds}") from exc
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _signed(value: int) -> int:
    """int32/int64 from a varint: negative numbers come as 64-bit two's complement."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _bytes(wire: int, value: int | bytes, where: str) -> bytes:
    if wire != BYTES or not isinstance(value, bytes):
        raise ProtobufError(f"field {where}: wire type {wire}, expected length-delimited")
    return value


def _text(wire: int, value: int | bytes, where: str) -> str:
    try:
        return _bytes(wire, value, where).decode()
    except UnicodeDecodeError as exc:
        raise ProtobufError(f"field {where}: not UTF-8") from exc
