"""Probes, really probed: httpGet, tcpSocket and exec, with the kubelet's messages.

- httpGet: `GET <scheme>://<host or pod IP>:<port><path>` (a named port is looked up in
  the container's ports; httpHeaders sent; `User-Agent: kube-probe/1.32`); 200-399 is
  success, anything else "HTTP probe failed with statuscode: N"; a connection that fails
  `Get "http://IP:PORT/path": dial tcp IP:PORT: connect: connection refused`. HTTPS
  does not verify the certificate, as the kubelet.
- tcpSocket: a connection opens; else "dial tcp IP:PORT: connect: connection refused".
- exec: the command runs with the container's environment and working directory (mount
  paths rewritten); exit 0 is success, else the output is the message.
- grpc: a TCP connection to the port (no health protocol here).
Each attempt is bounded by timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any

from arks_devcluster.kubelet.images import executable
from arks_devcluster.kubelet.launch import Launch

Obj = dict[str, Any]


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Timing:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def timing(probe: Obj, period_cap: float) -> Timing:
    return Timing(
        initial_delay=float(probe.get("initialDelaySeconds") or 0),
        period=min(float(probe.get("periodSeconds") or 10), period_cap),
        timeout=float(probe.get("timeoutSeconds") or 1),
        success_threshold=int(probe.get("successThreshold") or 1),
        failure_threshold=int(probe.get("failureThreshold") or 3),
    )


def _port(value: Any, container: Obj) -> int | None:
    if isinstance(value, int):
        return value
    if str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    return None


def _refused(host: str, port: int, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"dial tcp {host}:{port}: i/o timeout"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {host}:{port}: connect: connection refused"
    return f"dial tcp {host}:{port}: {exc}"


async def _http(spec: Obj, container: Obj, pod_ip: str, seconds: float) -> Result:
    host = spec.get("host") or pod_ip
    port = _port(spec.get("port"), container)
    if port is None:
        return Result(False, f"unknown port name {spec.get('port')!r}")
    scheme = str(spec.get("scheme") or "HTTP").lower()
    path = spec.get("path") or "/"
    url = f"{scheme}://{host}:{port}{path}"
    context = None
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), seconds
        )
    except (OSError, TimeoutError) as exc:
        return Result(False, f'Get "{url}": {_refused(host, port, exc)}')
    try:
        headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*"}
        for header in spec.get("httpHeaders") or []:
            headers[str(header.get("name"))] = str(header.get("value", ""))
        request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((request + "Connection: close\r\n\r\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), seconds)
    except TimeoutError:
        return Result(
            False,
            f'Get "{url}": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)",
        )
    except OSError as exc:
        return Result(False, f'Get "{url}": {exc}')
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = line.decode(errors="replace").split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if 200 <= code < 400:
        return Result(True)
    return Result(False, f"HTTP probe failed with statuscode: {code}")


async def _tcp(spec: Obj, container: Obj, pod_ip: str, seconds: float) -> Result:
    host = spec.get("host") or pod_ip
    port = _port(spec.get("port"), container)
    if port is None:
        return Result(False, f"unknown port name {spec.get('port')!r}")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    except (OSError, TimeoutError) as exc:
        return Result(False, _refused(host, port, exc))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Result(True)


async def _exec(spec: Obj, launch: Launch, seconds: float) -> Result:
    command = [launch.mounts.rewrite(str(w)) for w in spec.get("command") or []]
    if not command:
        return Result(False, "exec probe without a command")
    found = executable(command[0], launch.env.get("PATH", ""))
    if found is None:
        return Result(False, f'exec: "{command[0]}": executable file not found in $PATH')
    proc = await asyncio.create_subprocess_exec(
        found,
        *command[1:],
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=launch.env,
        cwd=launch.cwd,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Result(False, f"command {' '.join(command)!r} timed out")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return Result(proc.returncode == 0, output.decode(errors="replace").strip())


async def probe_once(probe: Obj, container: Obj, pod_ip: str, launch: Launch | None) -> Result:
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        return await _http(probe["httpGet"], container, pod_ip, timeout)
    if "tcpSocket" in probe:
        return await _tcp(probe["tcpSocket"], container, pod_ip, timeout)
    if "grpc" in probe:
        return await _tcp(probe["grpc"], container, pod_ip, timeout)
    if "exec" in probe and launch is not None:
        return await _exec(probe["exec"], launch, timeout)
    return Result(True)
