"""What a newcomer does, end to end: `arks up` (what `make run` runs), then the OpenAI API.

One stack for the whole module (starting it is the expensive part); the steps run in
order and each leaves the stack as the next expects. Everything is real: nats-server,
Valkey, the four services, engine-simulator replicas, the `arks` CLI and the `openai`
client. Only the simulator's clock runs faster than real time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import openai
import psutil
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from arks_common import access, subjects

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
T = TypeVar("T")


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    dir: Path
    state: dict[str, Any]
    env: dict[str, str]

    @property
    def router_url(self) -> str:
        return str(self.state["router_url"])

    @property
    def nats_url(self) -> str:
        return str(self.state["nats_url"])

    async def connect(self, user: str) -> nats.aio.client.Client:
        """NATS as one of the stack's users (`arks up` keeps them in .arks/credentials.json)."""
        passwords = json.loads((self.dir / "credentials.json").read_text())["nats"]
        return await nats.connect(
            self.nats_url,
            user=user,
            password=passwords[user],
            inbox_prefix=access.inbox_prefix(user),
        )

    def arks(self, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        """Run the `arks` CLI as a user would, from the stack's directory."""
        done = subprocess.run(
            [str(BIN / "arks"), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.dir.parent,
            env=self.env,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"arks {' '.join(argv)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.arks("get", kind, name, "-o", "json"))
        return obj

    def client(self, token: str = "sk-test123456") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.router_url}/v1", api_key=token, max_retries=0)


def eventually(check: Callable[[], T | None], *, timeout: float = 60, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, KeyError, IndexError, openai.APIError, OSError) as exc:
            last = exc
        time.sleep(0.25)  # noqa: TID251 - a synchronous test polling a separate process
    raise AssertionError(f"timed out waiting for {what or check}: {last!r}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("newcomer")
    data = home / ".arks"
    env = {
        **os.environ,
        "ARKS_LOCAL__SIM_TIME_SCALE": "20",
        "ARKS_TELEMETRY__LOG_JSON": "true",
    }
    env.pop("ARKS_NATS__URL", None)
    env.pop("ARKS_REDIS__URL", None)
    argv = [
        str(BIN / "arks"),
        "up",
        "--dir",
        str(data),
        "--router-port",
        "0",
        "--nats-port",
        "0",
        "--valkey-port",
        "0",
    ]
    console = home / "arks-up.out"
    with console.open("wb") as sink:  # a file, not a pipe nobody drains
        proc = subprocess.Popen(argv, cwd=home, env=env, stdout=sink, stderr=subprocess.STDOUT)
    state_file = data / "state.json"
    try:

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                out = console.read_text(errors="replace")
                raise RuntimeError(f"arks up exited with {proc.returncode}:\n{out}")
            if not state_file.is_file():
                return None
            state: dict[str, Any] = json.loads(state_file.read_text())
            return state if state.get("ready") else None

        state = eventually(ready, timeout=240, what="arks up to be ready")
        yield Stack(proc, data, state, env)
    finally:
        family = _family(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever the test asserted, nothing may outlive the stack.
        leftovers = [p for p in family if _alive(p)]
        for p in leftovers:
            p.kill()
        assert not leftovers, f"processes outlived `arks up`: {leftovers}"


def _family(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _replicas(stack: Stack) -> list[psutil.Process]:
    """Engine replica processes of the stack (the arks up process adopts orphans)."""
    return [
        p
        for p in _family(stack.proc.pid)
        if _alive(p) and any("arks-engine-sim" in part for part in p.cmdline())
    ]


async def _routes(stack: Stack) -> dict[str, Any]:
    nc = await stack.connect(access.ADMIN)
    try:
        kv = await nc.jetstream().key_value(subjects.ROUTES_BUCKET)
        entry = await kv.get(subjects.namespaced_key("default", "qwen-7b"))
        table: dict[str, Any] = json.loads(entry.value or b"{}")
        return table
    finally:
        await nc.close()


def _backend_urls(stack: Stack) -> list[str]:
    return [b["url"] for b in asyncio.run(_routes(stack))["backends"]]


def _served(url: str) -> float:
    """Requests a replica finished, from its own vLLM-style metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total")
    )


def _chat(client: openai.OpenAI, text: str, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="qwen-7b", messages=[{"role": "user", "content": text}], max_tokens=16, **kw
    )


def _until_refused(send: Callable[[int], Any], limit: int) -> tuple[int, openai.RateLimitError]:
    """Send until the router answers 429; how many were admitted, and the 429."""
    for i in range(limit):
        try:
            send(i)
        except openai.RateLimitError as refused:
            return i, refused
    raise AssertionError(f"{limit} requests were all admitted")


# ------------------------------------------------------------------------------- the steps


def test_01_upstream_curl_request_answers_with_usage(stack: Stack) -> None:
    raw = _chat(stack.client(), "Hello!")
    assert raw.http_response.status_code == 200
    assert raw.headers["x-request-id"]
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0


def test_02_streaming_with_the_openai_client(stack: Stack) -> None:
    stream = stack.client().chat.completions.create(
        model="qwen-7b",
        messages=[{"role": "user", "content": "Stream, please."}],
        max_tokens=16,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    # The router asked the engine for usage but the client did not: it must not see it.
    assert all(c.usage is None for c in chunks)


def test_02b_tool_calling_works_out_of_the_box(stack: Stack) -> None:
    # The quickstart starts the simulator as a vLLM deployment for agents would be
    # (`--enable-auto-tool-choice --tool-call-parser hermes`): "auto" is accepted.
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    token = stack.arks("token", "create", "agent", "--endpoint", "qwen-7b", "--rpm", "1000")
    client = stack.client(token.strip())
    eventually(lambda: _chat(client, "granted?"), timeout=30, what="the agent token")
    auto = _chat(client, "Weather in Paris?", tools=tools, tool_choice="auto")
    assert auto.http_response.status_code == 200
    required = _chat(client, "Weather in Paris?", tools=tools, tool_choice="required")
    (call,) = required.parse().choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_03_rpm_limit_answers_429_with_retry_after(stack: Stack) -> None:
    client = stack.client()
    admitted, limited = _until_refused(lambda i: _chat(client, f"rpm {i}"), 10)
    # The quickstart token allows 5 requests a minute; `arks up`'s check and the two
    # requests above used some of them already.
    assert 0 < admitted <= 3
    response = limited.response
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


def test_04_quota_status_and_billing_records_follow(stack: Stack) -> None:
    def used() -> int | None:
        status = stack.get("aq", "basic-quota").get("status", {})
        total = {q["type"]: q["used"] for q in status.get("quotaStatus", [])}.get("total", 0)
        return total or None

    assert eventually(used, timeout=30, what="basic-quota status") > 0

    async def billing() -> list[dict[str, Any]]:
        nc = await stack.connect(access.BILLING)  # the read-only billing user
        try:
            sub = await nc.jetstream().pull_subscribe(
                subjects.BILLING_ALL,
                stream=subjects.BILLING_STREAM,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            )
            msgs = await sub.fetch(100, timeout=5)
            await sub.unsubscribe()
            return [json.loads(m.data) for m in msgs]
        finally:
            await nc.close()

    records = eventually(lambda: asyncio.run(billing()), timeout=30, what="billing records")
    priced = [r for r in records if r["quota"] == "basic-quota"]
    assert priced
    assert all(r["price_version"] for r in priced)
    assert any(float(r["amount_total"]) > 0 for r in priced)


def test_05_a_small_quota_is_exhausted_and_reported(stack: Stack) -> None:
    stack.arks(
        "apply",
        "-f",
        "-",
        stdin=(
            "apiVersion: arks.ai/v1\nkind: ArksQuota\nmetadata: {name: tiny-quota}\n"
            "spec:\n  quotas: [{type: total, value: 400}]\n"
        ),
    )
    token = stack.arks(
        "token", "create", "tiny", "--endpoint", "qwen-7b", "--rpm", "1000", "--quota", "tiny-quota"
    ).strip()
    client = stack.client(token)
    eventually(lambda: _chat(client, "first"), timeout=30, what="the new token to be granted")
    spent, exhausted = _until_refused(lambda i: _chat(client, f"spend {i}"), 60)
    for _ in range(30):
        if exhausted.code != "rate_limit_exceeded":
            break
        # held by answers the accountant has not settled yet: retry as a client would
        time.sleep(int(exhausted.response.headers["retry-after"]))  # noqa: TID251
        more, exhausted = _until_refused(lambda i: _chat(client, f"spend more {i}"), 60)
        spent += more
    assert spent > 0
    assert exhausted.code == "insufficient_quota"

    def used() -> int | None:
        status = stack.get("aq", "tiny-quota").get("status", {})
        return {q["type"]: q["used"] for q in status.get("quotaStatus", [])}.get("total")

    total = eventually(used, timeout=30, what="tiny-quota status")
    assert 0 < total <= 400
    assert "tiny-quota" in stack.arks("get", "aq")


def test_06_scaling_to_three_replicas_spreads_traffic(stack: Stack) -> None:
    app = stack.get("arkapp", "app-qwen")
    app["spec"]["replicas"] = 3
    for key in ("status", "resourceVersion", "uid", "generation", "creationTimestamp"):
        app.pop(key, None)
        app["metadata"].pop(key, None)
    stack.arks("apply", "-f", "-", stdin=json.dumps(app))

    def three_ready() -> list[str] | None:
        ready = stack.get("arkapp", "app-qwen").get("status", {}).get("readyReplicas")
        urls = _backend_urls(stack)
        return urls if ready == 3 and len(urls) == 3 else None

    urls = eventually(three_ready, timeout=120, what="three ready replicas in the route table")
    before = {url: _served(url) for url in urls}
    token = stack.arks("token", "create", "spread", "--endpoint", "qwen-7b", "--rpm", "10000")
    client = stack.client(token.strip())
    eventually(lambda: _chat(client, "hello"), timeout=30, what="the spread token")

    async def burst() -> None:
        aclient = openai.AsyncOpenAI(
            base_url=f"{stack.router_url}/v1", api_key=token.strip(), max_retries=0
        )
        async with aclient:
            for round_ in range(5):
                await asyncio.gather(
                    *(
                        aclient.chat.completions.create(
                            model="qwen-7b",
                            messages=[{"role": "user", "content": f"r{round_} q{i} {i * 7919}"}],
                            max_tokens=32,
                        )
                        for i in range(12)
                    )
                )

    asyncio.run(burst())
    served = {url: _served(url) - before[url] for url in urls}
    assert all(count > 0 for count in served.values()), served


def test_07_a_killed_replica_is_routed_around_and_restarted(stack: Stack) -> None:
    urls = _backend_urls(stack)
    assert len(urls) == 3
    victim = next(p for p in _replicas(stack) if str(urls[0].rsplit(":", 1)[1]) in p.cmdline())
    victim.kill()
    token = stack.arks("token", "create", "survivor", "--endpoint", "qwen-7b", "--rpm", "10000")
    client = stack.client(token.strip())
    eventually(lambda: _chat(client, "granted?"), timeout=30, what="the survivor token")
    for i in range(15):  # while the replica is down, every request still succeeds
        assert _chat(client, f"meanwhile {i}").http_response.status_code == 200

    def recovered() -> bool:
        replicas = _replicas(stack)
        return (
            len(replicas) == 3
            and victim.pid not in {p.pid for p in replicas}
            and (stack.get("arkapp", "app-qwen")["status"].get("readyReplicas") == 3)
        )

    eventually(recovered, timeout=120, what="the replica to be restarted")


def test_08_restarting_the_reconciler_duplicates_nothing(stack: Stack) -> None:
    replicas = {p.pid for p in _replicas(stack)}
    assert len(replicas) == 3
    reconciler = next(
        p for p in _family(stack.proc.pid) if any("arks-reconciler" in c for c in p.cmdline())
    )
    reconciler.kill()  # a crash: `arks up` restarts it, and it must adopt the replicas

    def restarted() -> bool:
        return any(
            "arks-reconciler" in " ".join(p.cmdline()) and p.pid != reconciler.pid
            for p in _family(stack.proc.pid)
            if _alive(p)
        )

    eventually(restarted, timeout=60, what="the reconciler to be restarted")
    time.sleep(5)  # noqa: TID251 - give a wrong reconciler time to start duplicates
    assert {p.pid for p in _replicas(stack)} == replicas
    assert stack.get("arkapp", "app-qwen")["status"]["readyReplicas"] == 3
    assert _chat(
        stack.client(
            stack.arks("token", "create", "after", "--endpoint", "qwen-7b", "--rpm", "100").strip()
        ),
        "still there",
    )


def test_09_deleting_the_application_drops_it_from_the_endpoint(stack: Stack) -> None:
    stack.arks("delete", "arkapp", "app-qwen")
    eventually(lambda: not _backend_urls(stack), timeout=60, what="the endpoint to drop the app")
    eventually(lambda: not _replicas(stack), timeout=60, what="the replicas to stop")
    assert "app-qwen" not in stack.arks("get", "arkapp", check=False)
