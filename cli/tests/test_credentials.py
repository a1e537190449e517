"""`.arks/credentials.json`: made once, private, reused; each service gets its own."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from arks_cli import credentials
from arks_cli.__main__ import main
from arks_cli.errors import CliError
from arks_common import access


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_made_once_private_and_reused(tmp_path: Path) -> None:
    first = credentials.load_or_create(tmp_path)
    assert _mode(credentials.path(tmp_path)) == 0o600
    assert set(first.nats) == set(access.ROLES)
    assert set(first.valkey) == set(access.VALKEY_ROLES)
    assert credentials.load_or_create(tmp_path) == first


def test_a_user_added_later_gets_a_password_and_the_others_keep_theirs(tmp_path: Path) -> None:
    first = credentials.load_or_create(tmp_path)
    data = json.loads(credentials.path(tmp_path).read_text())
    del data["nats"][access.BILLING]
    credentials.path(tmp_path).write_text(json.dumps(data))
    again = credentials.load_or_create(tmp_path)
    assert access.BILLING in again.nats
    assert again.nats[access.ROUTER] == first.nats[access.ROUTER]


def test_a_file_others_can_read_is_narrowed_with_a_warning(tmp_path: Path) -> None:
    credentials.load_or_create(tmp_path)
    credentials.path(tmp_path).chmod(0o644)
    warnings: list[str] = []
    credentials.load_or_create(tmp_path, warnings.append)
    assert _mode(credentials.path(tmp_path)) == 0o600
    assert warnings


def test_a_foreign_file_is_never_overwritten(tmp_path: Path) -> None:
    credentials.path(tmp_path).write_text("not json")
    with pytest.raises(CliError, match="not a credentials file"):
        credentials.load_or_create(tmp_path)
    assert credentials.path(tmp_path).read_text() == "not json"


def test_a_service_env_holds_only_its_own_user(tmp_path: Path) -> None:
    secrets = credentials.load_or_create(tmp_path)
    for service, user in access.SERVICE_USERS.items():
        env = credentials.service_env(secrets, service)
        own = {secrets.nats[user], secrets.valkey.get(user)}
        others = {*secrets.nats.values(), *secrets.valkey.values()} - own
        assert env[credentials.NATS_USER_ENV] == user
        assert not others & set(env.values())
        assert (credentials.REDIS_PASSWORD_ENV in env) == (user in access.VALKEY_ROLES)


def test_arks_credentials_prints_one_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / ".arks"
    secrets = credentials.load_or_create(root)
    (root / "state.json").write_text("{}")  # what find_state_dir looks for
    monkeypatch.setenv("ARKS_DIR", str(root))
    assert main(["credentials", "nats", "billing"]) == 0
    assert capsys.readouterr().out.strip() == secrets.nats[access.BILLING]
    assert main(["credentials", "valkey", "billing"]) == 1
    assert "no valkey user 'billing'" in capsys.readouterr().err
