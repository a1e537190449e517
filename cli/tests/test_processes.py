"""As a subreaper, `arks up` still finds (and stops) what its children orphaned."""

from __future__ import annotations

import asyncio
import json
import sys

SCRIPT = r"""
import json, subprocess, sys
from arks_cli import processes
adopted = processes.become_subreaper()
# A child starts a grandchild in a session of its own, then exits: the grandchild is
# orphaned, as an engine replica is when its reconciler crashes.
out = subprocess.run(
    [sys.executable, "-c",
     "import subprocess, sys; "
     "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
     "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
     "print(p.pid)"],
    check=True, capture_output=True, text=True,
)
orphan = int(out.stdout.strip())
found = [p.pid for p in processes.descendants()]
killed = processes.terminate_all([p for p in processes.descendants() if p.pid == orphan], 5.0)
seen = processes.reap_adopted((), set())
processes.reap_adopted((), seen)
after = [p.pid for p in processes.descendants()]
print(json.dumps({"adopted": adopted, "orphan": orphan, "found": found, "after": after}))
"""


async def test_orphaned_grandchildren_are_found_and_stopped() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, stdout=asyncio.subprocess.PIPE
    )
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    report = json.loads(stdout)
    assert report["adopted"] is True
    assert report["orphan"] in report["found"]
    assert report["orphan"] not in report["after"]
