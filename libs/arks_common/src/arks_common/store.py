"""The local platform's API server: arks.ai/v1 objects in the NATS KV bucket `arks-resources`.

It gives the reconciler, the accountant and the `arks` CLI the Kubernetes semantics they
rely on, so the same code paths serve both platforms:

- objects are validated and defaulted on write (like a CRD's structural schema);
- `metadata.resourceVersion` is the KV revision, and writes that carry a stale one fail
  with `ConflictError` (compare-and-set);
- `metadata.generation` starts at 1 and grows only when `spec` changes; `uid` and
  `creationTimestamp` are set once;
- `status` is a subresource: `apply()` never changes it, `update_status()` changes
  nothing else;
- `delete()` of an object with finalizers only sets `deletionTimestamp`; removing the
  last finalizer then deletes it;
- `watch()` yields a snapshot of every object of the watched kinds, then changes, and a
  fresh snapshot after any NATS reconnect (see `messaging.Bus.watch`).

Secrets at rest: an ArksToken is stored with `spec.tokenSha256` in place of `spec.token`
(hashed on every write, before anything reaches NATS), every ArksToken write rolls up
the key (no older revision stays in the bucket's history), and a delete purges the key
with all its revisions. `scrub_tokens()` rewrites objects stored by an older Arks that
still hold a plaintext token.

Objects travel as JSON dicts (what kubectl shows); `resources.parse_resource()` types them.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.js.api import Header
from nats.js.kv import KV_OP as KV_OPERATION
from nats.js.kv import KV_PURGE
from nats.js.kv import MSG_ROLLUP_SUBJECT as ROLLUP_SUBJECT

from arks_common import access, resources, subjects
from arks_common.errors import PermanentError, RetryableError
from arks_common.messaging import Bus, KvChange, KvSnapshot

Obj = dict[str, Any]
StatusMutation = Callable[[Obj], Obj | None]


class ConflictError(RetryableError):
    """The object changed since it was read (stale resourceVersion); read it and retry."""


class NotFoundError(PermanentError):
    """No such object."""


ReadCurrent = Callable[[int], Awaitable[Obj | None]]
WriteStatus = Callable[[Obj, Obj], Awaitable[Obj]]


async def update_status_loop(
    read: ReadCurrent, write: WriteStatus, mutate: StatusMutation, *, attempts: int, what: str
) -> Obj | None:
    """The read-mutate-write loop of every `update_status`, on either platform.

    `read(attempt)` gives the object as it is now (None: it does not exist); `mutate`
    gets a copy of its status and returns the new one (None or the same: nothing to
    write); `write(current, status)` writes it, raising `ConflictError` when `current`
    is stale (read again) or `NotFoundError` when it is gone (None).
    """
    for attempt in range(attempts):
        current = await read(attempt)
        if current is None:
            return None
        status = mutate(copy.deepcopy(current.get("status") or {}))
        if status is None or status == (current.get("status") or {}):
            return current
        try:
            return await write(current, status)
        except ConflictError:
            continue
        except NotFoundError:
            return None
    raise ConflictError(f"status of {what} keeps changing; retry")


class AlreadyExistsError(PermanentError):
    """An object of that kind, namespace and name exists already."""


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return subjects.resource_key(resources.PLURALS[self.kind], self.namespace, self.name)

    @classmethod
    def from_key(cls, key: str) -> ObjectRef:
        plural, namespace, name = key.split(".", 2)
        kind = next(k for k, p in resources.PLURALS.items() if p == plural)
        return cls(kind, namespace, name)

    @classmethod
    def of(cls, obj: Obj) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(str(obj.get("kind")), meta.get("namespace") or "default", str(meta["name"]))


@dataclass(frozen=True)
class StoreSnapshot:
    """Every object of `kinds`: replace your view of those kinds (and only those: a
    watch that relists one kind, as a Kubernetes informer after 410 Gone, says so)."""

    objects: dict[ObjectRef, Obj]
    kinds: frozenset[str]


@dataclass(frozen=True)
class StoreChange:
    """One object was written (`obj`) or deleted (`obj` is None)."""

    ref: ObjectRef
    obj: Obj | None


StoreUpdate = StoreSnapshot | StoreChange


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize(obj: Obj) -> Obj:
    """Validate and default an object as the API server would; keeps server-set metadata.
    An ArksToken's bearer token is replaced by its sha256 (the store never keeps it)."""
    typed = resources.parse_resource(obj)
    if isinstance(typed, resources.ArksToken) and typed.spec.token is not None:
        typed = typed.model_copy(update={"spec": typed.spec.hashed()})
    return resources.dump_resource(typed)


def _without_token(body: Obj) -> Obj:
    """`body` with an ArksToken's `spec.token` replaced by `spec.tokenSha256`."""
    spec = body.get("spec")
    if body.get("kind") != "ArksToken" or not isinstance(spec, dict) or "token" not in spec:
        return body
    clean = copy.deepcopy(body)
    token = clean["spec"].pop("token")
    if token:
        clean["spec"]["tokenSha256"] = resources.hash_token(str(token))
    return clean


class ResourceStore:
    def __init__(self, bus: Bus, *, attempts: int = 20) -> None:
        self.bus = bus
        self.attempts = attempts

    async def _kv(self) -> Any:
        try:
            return await self.bus.kv(subjects.RESOURCES_BUCKET)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise RetryableError(f"resource store unavailable: {exc}") from exc

    # ---------------------------------------------------------------- reads
    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        kv = await self._kv()
        ref = ObjectRef(kind, namespace, name)
        try:
            entry = await kv.get(ref.key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return _decode(entry.value, entry.revision)

    async def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        prefix = f"{resources.PLURALS[kind]}.{namespace}.>" if namespace else None
        pattern = prefix or f"{resources.PLURALS[kind]}.>"
        stop = asyncio.Event()
        updates = self.bus.watch(subjects.RESOURCES_BUCKET, keys=pattern, stop=stop)
        try:
            async with asyncio.timeout(self.bus.settings.request_timeout * 2):
                async for update in updates:
                    if isinstance(update, KvSnapshot):
                        return [
                            _decode(update.entries[key], update.revisions[key])
                            for key in sorted(update.entries)
                        ]
        except TimeoutError as exc:
            raise RetryableError("listing resources timed out") from exc
        finally:
            stop.set()
            await updates.aclose()
        return []

    # ---------------------------------------------------------------- writes
    async def create(self, obj: Obj) -> Obj:
        body = normalize(obj)
        meta = body["metadata"]
        for server_field in ("resourceVersion", "deletionTimestamp"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = now_rfc3339()
        body.pop("status", None)
        ref = ObjectRef.of(body)
        kv = await self._kv()
        try:
            revision = await kv.create(ref.key, _encode(body))
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise AlreadyExistsError(
                f"{ref.kind} {ref.namespace}/{ref.name} already exists"
            ) from exc
        return _with_version(body, revision)

    async def apply(self, obj: Obj) -> tuple[Obj, str]:
        """Create, or update spec/labels/annotations keeping status (kubectl apply).

        Returns the stored object and one of "created", "configured", "unchanged".
        """
        desired = normalize(obj)
        ref = ObjectRef.of(desired)
        for _ in range(self.attempts):
            current = await self.get(ref.kind, ref.namespace, ref.name)
            if current is None:
                try:
                    return await self.create(desired), "created"
                except AlreadyExistsError:
                    continue
            merged = copy.deepcopy(current)
            cur_meta, new_meta = merged["metadata"], desired["metadata"]
            for key in ("labels", "annotations"):
                if new_meta.get(key):
                    cur_meta[key] = new_meta[key]
                else:
                    cur_meta.pop(key, None)
            spec_changed = current.get("spec") != desired.get("spec")
            merged["spec"] = desired.get("spec")
            if spec_changed:
                cur_meta["generation"] = int(cur_meta.get("generation") or 1) + 1
            if merged == current:
                return current, "unchanged"
            try:
                return await self.replace(merged), "configured"
            except ConflictError:
                continue
        raise ConflictError(f"{ref.kind} {ref.namespace}/{ref.name} keeps changing; retry")

    async def replace(self, obj: Obj) -> Obj:
        """Write a whole object read earlier; fails with ConflictError if it changed since."""
        ref = ObjectRef.of(obj)
        version = obj.get("metadata", {}).get("resourceVersion")
        if not version:
            raise PermanentError("replace needs metadata.resourceVersion from a read")
        body = copy.deepcopy(obj)
        body["metadata"].pop("resourceVersion", None)
        return await self._cas(ref, body, int(version))

    async def update_status(
        self, kind: str, namespace: str, name: str, mutate: StatusMutation
    ) -> Obj | None:
        """Change only `status`, retrying on conflicts; None if the object does not exist.

        `mutate` gets a copy of the current status and returns the new one, or None to
        leave the object as it is.
        """
        ref = ObjectRef(kind, namespace, name)

        async def read(_attempt: int) -> Obj | None:
            return await self.get(kind, namespace, name)

        async def write(current: Obj, status: Obj) -> Obj:
            body = copy.deepcopy(current)
            body["status"] = status
            version = int(body["metadata"].pop("resourceVersion"))
            return await self._cas(ref, body, version)

        return await update_status_loop(
            read, write, mutate, attempts=self.attempts, what=f"{kind} {namespace}/{name}"
        )

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete, or mark for deletion when finalizers remain; False if it did not exist."""
        ref = ObjectRef(kind, namespace, name)
        for _ in range(self.attempts):
            current = await self.get(kind, namespace, name)
            if current is None:
                return False
            meta = current["metadata"]
            version = int(meta["resourceVersion"])
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return True
                body = copy.deepcopy(current)
                body["metadata"].pop("resourceVersion")
                body["metadata"]["deletionTimestamp"] = now_rfc3339()
                try:
                    await self._cas(ref, body, version)
                    return True
                except ConflictError:
                    continue
            if await self._delete_at(ref, version):
                return True
        raise ConflictError(f"{kind} {namespace}/{name} keeps changing; retry delete")

    async def set_finalizers(
        self, kind: str, namespace: str, name: str, finalizers: Iterable[str]
    ) -> Obj | None:
        """Set metadata.finalizers; an object being deleted goes away with the last one."""
        ref = ObjectRef(kind, namespace, name)
        wanted = list(dict.fromkeys(finalizers))
        for _ in range(self.attempts):
            current = await self.get(kind, namespace, name)
            if current is None:
                return None
            meta = current["metadata"]
            if list(meta.get("finalizers") or []) == wanted:
                return current
            version = int(meta["resourceVersion"])
            if not wanted and meta.get("deletionTimestamp"):
                if await self._delete_at(ref, version):
                    return None
                continue
            body = copy.deepcopy(current)
            body["metadata"].pop("resourceVersion")
            if wanted:
                body["metadata"]["finalizers"] = wanted
            else:
                body["metadata"].pop("finalizers", None)
            try:
                return await self._cas(ref, body, version)
            except ConflictError:
                continue
        raise ConflictError(
            f"finalizers of {kind} {namespace}/{name} keep changing; retry", delay=0.1
        )

    async def _delete_at(self, ref: ObjectRef, version: int) -> bool:
        """Purge if still at `version` (the key and every revision of it); False when it
        changed meanwhile (read and retry)."""
        await self._kv()
        headers = {KV_OPERATION: KV_PURGE, Header.ROLLUP: ROLLUP_SUBJECT}
        try:
            await self._write(ref, b"", headers, version)
        except ConflictError:
            return False
        return True

    async def _cas(self, ref: ObjectRef, body: Obj, version: int) -> Obj:
        kv = await self._kv()
        body = _without_token(body)
        if ref.kind != "ArksToken":
            try:
                revision = await kv.update(ref.key, _encode(body), last=version)
            except nats.js.errors.KeyWrongLastSequenceError as exc:
                raise ConflictError(f"{ref.kind} {ref.namespace}/{ref.name} changed") from exc
            return _with_version(body, revision)
        # A rollup: the bucket keeps no earlier revision of a token (one stored by an
        # older Arks may have held the plaintext).
        revision = await self._write(ref, _encode(body), {Header.ROLLUP: ROLLUP_SUBJECT}, version)
        return _with_version(body, revision)

    async def _write(self, ref: ObjectRef, data: bytes, headers: dict[str, str], last: int) -> int:
        """Publish to the key's subject if the key is still at revision `last`."""
        headers = {**headers, Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)}
        subject = access.kv_subject(subjects.RESOURCES_BUCKET, ref.key)
        try:
            ack = await self.bus.js.publish(subject, data, headers=headers)
        except nats.js.errors.APIError as exc:
            # "wrong last sequence" (10071, 10164; nats-py may raise it as a plain 400
            # BadRequestError, e.g. for a purge): the key changed since it was read.
            if exc.err_code in (10071, 10164) or "wrong last sequence" in str(
                exc.description or ""
            ):
                raise ConflictError(f"{ref.kind} {ref.namespace}/{ref.name} changed") from exc
            raise
        except (nats.errors.Error, OSError) as exc:
            raise RetryableError(f"resource store unavailable: {exc}") from exc
        return int(ack.seq)

    async def scrub_tokens(self) -> int:
        """Rewrite every ArksToken stored with a plaintext token (by an older Arks) with
        its digest, dropping the earlier revisions; returns how many were rewritten."""
        rewritten = 0
        for obj in await self.list("ArksToken"):
            if "token" not in (obj.get("spec") or {}):
                continue
            ref = ObjectRef.of(obj)
            for _ in range(self.attempts):
                current = await self._raw(ref)
                if current is None or "token" not in (current[0].get("spec") or {}):
                    break
                try:
                    await self._cas(ref, current[0], current[1])
                    rewritten += 1
                    break
                except ConflictError:
                    continue
        return rewritten

    async def _raw(self, ref: ObjectRef) -> tuple[Obj, int] | None:
        kv = await self._kv()
        try:
            entry = await kv.get(ref.key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        obj: Obj = orjson.loads(entry.value)
        return obj, entry.revision

    # ---------------------------------------------------------------- watch
    async def watch(
        self, kinds: Iterable[str] | None = None, *, stop: asyncio.Event | None = None
    ) -> AsyncGenerator[StoreUpdate, None]:
        wanted = set(kinds or resources.PLURALS)
        plurals = {resources.PLURALS[k] for k in wanted}
        async for update in self.bus.watch(subjects.RESOURCES_BUCKET, stop=stop):
            if isinstance(update, KvSnapshot):
                yield StoreSnapshot(
                    {
                        ObjectRef.from_key(key): _decode(value, update.revisions[key])
                        for key, value in update.entries.items()
                        if key.split(".", 1)[0] in plurals
                    },
                    frozenset(wanted),
                )
            elif isinstance(update, KvChange):
                if update.key.split(".", 1)[0] not in plurals:
                    continue
                ref = ObjectRef.from_key(update.key)
                if update.value is None:
                    yield StoreChange(ref, None)
                else:
                    yield StoreChange(ref, _decode(update.value, update.revision))


def _encode(obj: Obj) -> bytes:
    return orjson.dumps(obj)


def _decode(data: bytes, revision: int) -> Obj:
    obj: Obj = orjson.loads(data)
    return _with_version(obj, revision)


def _with_version(obj: Obj, revision: int) -> Obj:
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj
