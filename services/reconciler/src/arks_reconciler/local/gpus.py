"""The machine's GPUs and which replica holds which (`CUDA_VISIBLE_DEVICES`).

The inventory is `ARKS_LOCAL__GPUS` when set, else what `nvidia-smi -L` lists (its
indexes), else none. A replica is given its GPUs when it first starts and keeps them
across restarts of its process and of the reconciler (they are in its registry
record, and `adopt` reserves them again); they are released when the replica stops.
An exclusive replica takes only GPUs nobody holds; a sharing one (its application
opted in with `arks.ai/share-gpus: "true"`) takes GPUs that are free or held only by
other sharing replicas, least used first.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

_NVIDIA_SMI_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)


def discover_with_nvidia_smi() -> list[str]:
    """GPU indexes `nvidia-smi -L` lists; [] when it is missing or fails."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return []
    try:
        out = subprocess.run(
            [program, "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi -L failed (%s): no GPUs are given to replicas", exc)
        return []
    return _NVIDIA_SMI_LINE.findall(out)


@dataclass(frozen=True)
class Shortage:
    needed: int
    free: tuple[str, ...]
    total: int

    @property
    def message(self) -> str:
        ids = f" ({', '.join(self.free)})" if self.free else ""
        plural = "GPU" if self.needed == 1 else "GPUs"
        return (
            f"waiting for GPUs: needs {self.needed} {plural}, {len(self.free)} free{ids} "
            f"of the {self.total} this machine has"
        )


class GpuPool:
    def __init__(
        self,
        configured: Sequence[str] | None,
        discover: Callable[[], list[str]] = discover_with_nvidia_smi,
    ) -> None:
        self.inventory: tuple[str, ...] = tuple(
            configured if configured is not None else discover()
        )
        self._held: dict[str, tuple[tuple[str, ...], bool]] = {}
        """replica name -> (its GPUs, shared)."""

    def of(self, replica: str) -> tuple[str, ...]:
        held = self._held.get(replica)
        return held[0] if held else ()

    def _users(self) -> dict[str, list[bool]]:
        users: dict[str, list[bool]] = {gpu: [] for gpu in self.inventory}
        for gpus, shared in self._held.values():
            for gpu in gpus:
                users.setdefault(gpu, []).append(shared)
        return users

    def free(self) -> tuple[str, ...]:
        return tuple(gpu for gpu, users in self._users().items() if not users)

    def allocate(self, replica: str, count: int, *, shared: bool) -> tuple[str, ...] | Shortage:
        """The replica's GPUs (those it holds already, else new ones), or the shortage."""
        if count <= 0:
            return ()
        held = self.of(replica)
        if len(held) == count:
            return held
        self.release(replica)
        users = self._users()
        if shared:
            usable = [g for g in self.inventory if all(users.get(g, []))]
            usable.sort(key=lambda g: len(users.get(g, [])))  # stable: least used first
        else:
            usable = [g for g in self.inventory if not users.get(g)]
        if len(usable) < count:
            return Shortage(count, tuple(usable), len(self.inventory))
        chosen = tuple(sorted(usable[:count], key=self.inventory.index))
        self._held[replica] = (chosen, shared)
        return chosen

    def reserve(self, replica: str, gpus: Sequence[str], *, shared: bool) -> None:
        """Hold what an adopted replica was given (even GPUs no longer configured)."""
        if gpus:
            self._held[replica] = (tuple(gpus), shared)

    def release(self, replica: str) -> None:
        self._held.pop(replica, None)
