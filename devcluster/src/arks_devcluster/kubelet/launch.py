"""What a runnable container executes: argv, environment and working directory.

Kubernetes' semantics: `command` replaces the image's ENTRYPOINT (the rule's `command`),
`args` replace its CMD (the rule's `args`), both expanded with `$(VAR)` from the
container's environment. Then this machine's adaptations:

- the image's ENV is the rule's `env` on top of `PATH` (this Python's scripts directory
  first, so `arks-engine-sim` in a `bash -c` script is found), `HOSTNAME` (the pod's
  hostname), `HOME` (`<pod dir>/home`), `PYTHONUNBUFFERED=1` (logs as they are written);
- mount paths are rewritten to host directories (see `volumes`) in argv, env values and
  `workingDir`; the termination message path becomes `<pod dir>/<container>.termination-log`;
- the rule's `host_env` variables are set to the pod IP (over any value the pod gives:
  `0.0.0.0` would listen on every pod's address), and the value of each `host_flag`
  (`--host X`, `--host=X`, also inside a shell script argument) becomes the pod IP;
- a bare `argv[0]` is looked up next to this Python, then on the container's PATH;
- the working directory is `workingDir` when it lies under a mount, else `<pod dir>/cwd`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arks_devcluster.kubelet.config import ImageRule
from arks_devcluster.kubelet.environment import Lookup, container_env, expand
from arks_devcluster.kubelet.images import executable
from arks_devcluster.kubelet.volumes import Mounts, mounts_for

Obj = dict[str, Any]
TERMINATION_PATH = "/dev/termination-log"


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: Mounts
    termination_log: Path


class StartError(Exception):
    """The container's process cannot be started (exit 128, reason StartError)."""


def hostname(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"])[:63]


def image_env(rule: ImageRule, pod: Obj, pod_dir: Path) -> dict[str, str]:
    scripts = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{scripts}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
        "HOSTNAME": hostname(pod),
        "HOME": str(pod_dir / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("LANG", "LC_ALL", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(rule.env)
    return env


def replace_host_flags(argv: list[str], flags: tuple[str, ...], address: str) -> list[str]:
    out = list(argv)
    for flag in flags:
        script = re.compile(rf"(?<!\S){re.escape(flag)}(\s+|=)('[^']*'|\"[^\"]*\"|\S+)")
        replacement = flag.replace("\\", "\\\\") + r"\g<1>" + address
        for i, word in enumerate(out):
            if word == flag and i + 1 < len(out):
                out[i + 1] = address
            elif word.startswith(flag + "="):
                out[i] = f"{flag}={address}"
            elif any(c.isspace() for c in word):
                out[i] = script.sub(replacement, word)
    return out


def command_line(container: Obj, rule: ImageRule, env: Mapping[str, str]) -> list[str]:
    command = [str(w) for w in container.get("command") or []]
    args = [str(w) for w in container.get("args") or []]
    if not command and not args:
        return [*rule.command, *rule.args]
    expanded = [expand(word, env) for word in (command or args)]
    if command:
        return expanded + [expand(word, env) for word in args]
    return [*rule.command, *expanded]


def prepare_launch(
    pod: Obj,
    container: Obj,
    rule: ImageRule,
    *,
    pod_ip: str,
    pod_dir: Path,
    volumes: dict[str, Path],
    lookup: Lookup,
    allocatable: Mapping[str, str],
) -> Launch:
    name = container["name"]
    termination = pod_dir / f"{name}.termination-log"
    declared = str(container.get("terminationMessagePath") or TERMINATION_PATH)
    mounts = mounts_for(container, volumes, [(declared, str(termination))])
    env = container_env(pod, container, lookup, image_env(rule, pod, pod_dir), allocatable)
    env = {key: mounts.rewrite(value) for key, value in env.items()}
    for variable in rule.host_env:
        env[variable] = pod_ip
    argv = [mounts.rewrite(word) for word in command_line(container, rule, env)]
    argv = replace_host_flags(argv, rule.host_flag, pod_ip)
    if not argv:
        raise StartError("no command specified")
    found = executable(argv[0], env.get("PATH", ""))
    if found is None:
        raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH: unknown')
    argv[0] = found
    cwd = pod_dir / "cwd"
    working = container.get("workingDir")
    if working:
        cwd = Path(mounts.host_path(str(working)) or cwd)
    for directory in (cwd, pod_dir / "home"):
        directory.mkdir(parents=True, exist_ok=True)
    return Launch(argv, env, cwd, mounts, termination)
