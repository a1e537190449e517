"""Every service given wrong broker credentials stops at once (exit 78, configuration)
with one line naming the settings to fix, and never echoes the password."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from arks_common import access
from arks_common.access import Credentials
from arks_common.embedded import NatsServer, ValkeyServer
from arks_common.runtime import EXIT_PERMANENT

WRONG = "not-the-password-8d2c"
CASES = [
    ("arks_router", access.ROUTER, "nats"),
    ("arks_router", access.ROUTER, "valkey"),
    ("arks_accountant", access.ACCOUNTANT, "nats"),
    ("arks_accountant", access.ACCOUNTANT, "valkey"),
    ("arks_reconciler", access.RECONCILER, "nats"),
    ("arks_model_cache", access.MODEL_CACHE, "nats"),
]


@pytest.mark.parametrize(("module", "user", "broker"), CASES)
async def test_wrong_credentials_stop_the_service_naming_the_settings(
    module: str,
    user: str,
    broker: str,
    secured_nats_server: NatsServer,
    secured_valkey_server: ValkeyServer,
    credentials: Credentials,
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARKS_")}
    env.update(
        {
            "ARKS_NATS__URL": secured_nats_server.url,
            "ARKS_NATS__USER": user,
            "ARKS_NATS__PASSWORD": credentials.nats[user],
            "ARKS_NATS__INBOX_PREFIX": access.inbox_prefix(user),
            "ARKS_NATS__CONNECT_DEADLINE": "20",
            "ARKS_REDIS__URL": secured_valkey_server.url,
            "ARKS_HTTP__PORT": "0",
            "ARKS_USAGE__SPOOL_DIR": str(tmp_path / "spool"),
            "ARKS_PLATFORM": "local",
            "ARKS_LOCAL__DATA_DIR": str(tmp_path / "data"),
            "ARKS_CACHE__ROOT": str(tmp_path / "models"),
            "ARKS_STATUS__WRITER": "none",
        }
    )
    if user in credentials.valkey:
        env["ARKS_REDIS__USERNAME"] = user
        env["ARKS_REDIS__PASSWORD"] = credentials.valkey[user]
    env["ARKS_NATS__PASSWORD" if broker == "nats" else "ARKS_REDIS__PASSWORD"] = WRONG
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == EXIT_PERMANENT, text
    setting = "ARKS_NATS__USER / ARKS_NATS__PASSWORD"
    if broker == "valkey":
        setting = "ARKS_REDIS__USERNAME / ARKS_REDIS__PASSWORD"
    assert setting in text
    assert f"refused user '{user}'" in text
    assert WRONG not in text
    assert "Traceback" not in text
