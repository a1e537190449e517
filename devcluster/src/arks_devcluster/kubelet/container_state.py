"""A container's status as the kubelet reports it (`containerStatuses[]` items), and the
back-off arithmetic of restarts and image pulls.

States are upstream's: waiting (ContainerCreating, PodInitializing, ErrImagePull,
ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff), running (startedAt) and
terminated (exitCode, reason Completed / Error / StartError, message, startedAt,
finishedAt, containerID); `lastState` holds the previous instance's end. Container IDs
are `sim://<64 hex>`, one per started process.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arks_devcluster.kubelet.images import image_id, qualified

Obj = dict[str, Any]
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0
"""A container that ran this long starts its back-off again from zero."""
TERMINATION_MESSAGE_BYTES = 4096


def new_container_id() -> str:
    return "sim://" + uuid.uuid4().hex + uuid.uuid4().hex


def back_off(failures: int) -> float:
    """Seconds before restart number `failures + 1`: the first restart is immediate,
    then 10 s doubling up to 5 min, as the kubelet's CrashLoopBackOff."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_INITIAL * 2 ** (failures - 1), BACKOFF_MAX))


def go_duration(seconds: float) -> str:
    """Go's time.Duration text for whole seconds (`10s`, `1m20s`, `5m0s`)."""
    whole = int(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


@dataclass
class ContainerStatus:
    name: str
    image: str
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str | None = None
    attempt: int = 0
    """How many processes were started (the log follower waits for the next)."""

    def waiting(self, reason: str, message: str | None = None) -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.ready = self.started = False

    def running(self, started_at: str) -> None:
        self.state = {"running": {"startedAt": started_at}}

    def terminated(
        self, code: int, started_at: str | None, finished_at: str, message: str | None = None
    ) -> Obj:
        reason = "Completed" if code == 0 else "Error"
        if code == 128 and started_at is None:
            reason = "StartError"
        end: Obj = {"exitCode": code, "reason": reason}
        if message:
            end["message"] = message
        end.update(startedAt=started_at or finished_at, finishedAt=finished_at)
        if self.container_id:
            end["containerID"] = self.container_id
        self.state = {"terminated": end}
        self.ready = self.started = False
        return end

    @property
    def is_running(self) -> bool:
        return "running" in self.state

    def as_status(self) -> Obj:
        created = self.container_id is not None
        out: Obj = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": qualified(self.image) if created else self.image,
            "imageID": image_id(self.image) if created else "",
            "started": self.started,
        }
        if created:
            out["containerID"] = self.container_id
        return out


def termination_message(
    termination_log: Path, log: Path, policy: str | None, code: int
) -> str | None:
    """What the container wrote to its termination message path, else (policy
    FallbackToLogsOnError, a failure) the end of its log, as the kubelet reports it."""
    with contextlib.suppress(OSError):
        text = termination_log.read_bytes()[:TERMINATION_MESSAGE_BYTES]
        if text:
            return text.decode(errors="replace")
    if code != 0 and policy == "FallbackToLogsOnError":
        with contextlib.suppress(OSError):
            lines = log.read_bytes().splitlines()[-80:]
            return b"\n".join(lines)[-2048:].decode(errors="replace")
    return None


def seconds_between(start: Any, end: Any) -> float:
    try:
        first = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        last = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (last.astimezone(UTC) - first.astimezone(UTC)).total_seconds()
