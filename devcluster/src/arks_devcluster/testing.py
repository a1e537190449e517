"""Helpers for tests that drive a dev cluster with the real kubectl.

`Kubectl(kubeconfig)` runs `/usr/bin/kubectl` (or `kubectl` on PATH) as a subprocess with
`KUBECONFIG` set and nothing else of the caller's kube configuration, and returns the
exit code, stdout and stderr; `check()` fails with kubectl's own message. Nothing here
imports pytest, so launchers and benchmarks may use it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arks_devcluster.kubeconfig import write_kubeconfig

TIMEOUT = 60.0


def kubectl_binary() -> str:
    found = shutil.which("kubectl") or "/usr/bin/kubectl"
    return found


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class KubectlError(AssertionError):
    pass


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    @classmethod
    def for_server(
        cls, directory: Path, url: str, token: str, *, ca_pem: bytes | None = None
    ) -> Kubectl:
        return cls(write_kubeconfig(directory / "kubeconfig", url, token, ca_pem=ca_pem))

    async def run(self, *args: str, stdin: str | None = None) -> Result:
        """Run kubectl (at most `TIMEOUT` seconds)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.kubeconfig.parent),
            "KUBECONFIG": str(self.kubeconfig),
            # A fresh discovery cache per call: a test that creates a CRD expects the
            # next command to see its kind at once.
            "KUBECACHEDIR": tempfile.mkdtemp(prefix="kubecache-", dir=self.kubeconfig.parent),
        }
        proc = await asyncio.create_subprocess_exec(
            kubectl_binary(),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), TIMEOUT
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def check(self, *args: str, stdin: str | None = None) -> Result:
        result = await self.run(*args, stdin=stdin)
        if result.code != 0:
            raise KubectlError(f"kubectl {' '.join(args)} exited {result.code}: {result.err}")
        return result
