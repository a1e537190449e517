"""`.arks/state.json`: where a running `arks up` stack is, so other commands find it.

`arks up` writes it (atomically: temp file + rename) once its brokers run, rewrites it
when a broker or a service dies or is restarted (so it names only live pids: a broker
being restarted is missing from `processes` until it runs again) or the stack becomes
ready, and removes it on a clean stop. It
records the brokers' URLs, the router URL, the supervisor's pid and every child process
(pid, process group, start time), which is what `arks down` and the stale-stack cleanup
of the next `arks up` use to stop processes without ever signalling a recycled pid.

`find_state_dir()` looks for `.arks/state.json` in the working directory and its
parents (like git), or in `$ARKS_DIR` when that is set. A missing or unreadable file
means "no stack": readers get None, never an exception.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

STATE_DIR_NAME = ".arks"
STATE_FILE_NAME = "state.json"
DIR_ENV = "ARKS_DIR"


class ProcessRecord(BaseModel):
    """One child process of the stack."""

    model_config = ConfigDict(frozen=True)

    name: str
    pid: int
    pgid: int | None = None
    create_time: float | None = Field(
        None, description="psutil create_time: tells our process from a recycled pid."
    )
    log: str | None = None
    ready_url: str | None = None


class StackState(BaseModel):
    """What `arks up` tells the other `arks` commands."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    dir: str
    supervisor_pid: int
    supervisor_create_time: float | None = None
    started_at: str
    nats_url: str
    redis_url: str
    router_url: str | None = None
    ready: bool = False
    hint: str | None = Field(None, description="What to try once ready (the curl line).")
    processes: list[ProcessRecord] = Field(default_factory=list)
    descendants: list[ProcessRecord] = Field(
        default_factory=list,
        description="Processes started by the services (engine replicas, ...), last seen.",
    )


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE_NAME


def find_state_dir(start: Path | None = None) -> Path | None:
    """The `.arks` directory of the nearest stack: $ARKS_DIR, else cwd and its parents."""
    explicit = os.environ.get(DIR_ENV)
    if explicit:
        return Path(explicit).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        directory = candidate / STATE_DIR_NAME
        if state_path(directory).is_file():
            return directory
    return None


def read_state(directory: Path) -> StackState | None:
    """The state in `directory`, or None when there is none or it is unreadable."""
    try:
        return StackState.model_validate_json(state_path(directory).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def write_state(directory: Path, state: StackState) -> None:
    """Replace the state file atomically, so readers never see half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    target = state_path(directory)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(state.model_dump_json(indent=2) + "\n")
    temporary.replace(target)


def remove_state(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(directory).unlink()
