"""The `log` subresource of pods: `kubectl logs` against the dev cluster.

`GET /api/v1/namespaces/<ns>/pods/<name>/log` answers text/plain from the container's
log file (`<workdir>/pods/<ns>_<pod>_<uid>/<container>.log`; `previous=true` reads the
instance before, kept as `<container>.previous.log`), with `container` (required when the
pod has several: 400 "a container name must be specified for pod p, choose one of: [a
b]"), `tailLines`, `limitBytes` and `follow=true` (new output streamed until the
container's process ends, the pod goes, the kubelet stops or the client leaves).
`timestamps` and `sinceSeconds` are accepted and ignored: the files hold the processes'
raw output, without a time per line. A pod not scheduled yet has an empty log. A
container that has not started is 400 "container "c" in pod "p" is waiting to start:
ContainerCreating", as upstream; a missing previous instance 400 "previous terminated
container "c" in pod "p" not found". Without a running kubelet the answer is upstream's
500 for an unreachable kubelet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from arks_devcluster.bodies import flag
from arks_devcluster.errors import ApiError, bad_request

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi
    from arks_devcluster.targets import Target

Obj = dict[str, Any]
FOLLOW_POLL = 0.2
_PULLING = ("ErrImagePull", "ImagePullBackOff")


class PodLogs:
    """Where the kubelet keeps containers' output, and whether a container still runs."""

    def __init__(self, workdir: Path, running: Callable[[str, str], bool]) -> None:
        self.workdir = workdir
        self.running = running
        """(pod uid, container) → its process is running"""
        self.closed = False

    def path(self, pod: Obj, container: str, *, previous: bool = False) -> Path:
        meta = pod["metadata"]
        directory = self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        return directory / f"{container}{'.previous' if previous else ''}.log"


def _container(pod: Obj, wanted: str | None) -> str:
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    names = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    if not wanted:
        if len(names) == 1:
            return str(names[0])
        message = (
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        )
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise bad_request(message)
    if wanted not in names + init:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def _status_of(pod: Obj, container: str) -> Obj | None:
    status = pod.get("status") or {}
    for item in [
        *(status.get("containerStatuses") or []),
        *(status.get("initContainerStatuses") or []),
    ]:
        if item.get("name") == container:
            return dict(item)
    return None


def _check(pod: Obj, container: str, previous: bool) -> None:
    name = pod["metadata"]["name"]
    status = _status_of(pod, container) or {}
    ended_before = (status.get("lastState") or {}).get("terminated")
    if previous:
        if not ended_before:
            raise bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        return
    waiting = (status.get("state") or {}).get("waiting")
    if not status or (waiting is not None and not ended_before):
        reason = (waiting or {}).get("reason") or "ContainerCreating"
        if reason in _PULLING:
            reason = "trying and failing to pull image"
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')


def _number(query: Any, key: str, minimum: int) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"{key}: Invalid value: {raw!r}: must be an integer") from exc
    if value < minimum:
        raise bad_request(
            f"{key}: Invalid value: {value}: must be greater than or equal to {minimum}"
        )
    return value


def _tail(data: bytes, lines: int | None) -> bytes:
    if lines is None:
        return data
    if lines == 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


async def pod_log_request(api: FakeKubeApi, request: Request, target: Target) -> Response:
    if request.method != "GET":
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on pods/log")
    assert target.name is not None
    pod = api.store.current(target.rtype, target.ns, target.name)
    query = request.query_params
    container = _container(pod, query.get("container"))
    previous = flag(query.get("previous"))
    tail_lines = _number(query, "tailLines", 0)
    limit = _number(query, "limitBytes", 1)
    if not (pod.get("spec") or {}).get("nodeName"):
        return Response(b"", media_type="text/plain")  # upstream: no host, no location
    _check(pod, container, previous)
    logs = api.pod_logs
    if logs is None or logs.closed:
        url = f"https://127.0.0.1:10250/containerLogs/{target.ns}/{target.name}/{container}"
        raise ApiError(
            500,
            "InternalError",
            f'Get "{url}": dial tcp 127.0.0.1:10250: connect: connection refused',
        )
    path = logs.path(pod, container, previous=previous)
    whole = await asyncio.to_thread(_read, path)
    data = _tail(whole, tail_lines)
    if limit is not None:
        data = data[:limit]
    if not flag(query.get("follow")) or previous:
        return Response(data, media_type="text/plain")
    return StreamingResponse(
        _follow(api, logs, pod, container, path, data, len(whole), limit),
        media_type="text/plain",
    )


async def _follow(
    api: FakeKubeApi,
    logs: PodLogs,
    pod: Obj,
    container: str,
    path: Path,
    first: bytes,
    offset: int,
    limit: int | None,
) -> AsyncIterator[bytes]:
    meta = pod["metadata"]
    rtype = api.registry.resource("", "pods")
    sent = len(first)
    if first:
        yield first
    while limit is None or sent < limit:
        await asyncio.sleep(FOLLOW_POLL)
        running = logs.running(meta["uid"], container) and not logs.closed
        current = api.store.find(rtype, meta["namespace"], meta["name"])
        data = await asyncio.to_thread(_read, path)
        if len(data) < offset:  # the container restarted: a new file
            offset = 0
        chunk = data[offset:]
        offset = len(data)
        if limit is not None:
            chunk = chunk[: limit - sent]
        if chunk:
            sent += len(chunk)
            yield chunk
        if not running or current is None or current["metadata"]["uid"] != meta["uid"]:
            return
