from arks_common.settings import ServiceSettings


def test_nested_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("ARKS_NATS__URL", "nats://a:1, nats://b:2")
    monkeypatch.setenv("ARKS_HEALTH__PORT", "9100")
    monkeypatch.setenv("ARKS_TELEMETRY__LOG_JSON", "false")
    settings = ServiceSettings()
    assert settings.nats.servers == ["nats://a:1", "nats://b:2"]
    assert settings.health.port == 9100
    assert settings.telemetry.log_json is False


def test_defaults_are_the_embedded_stack() -> None:
    settings = ServiceSettings()
    assert settings.nats.url == "nats://127.0.0.1:4222"
    assert settings.shutdown.drain_timeout > 0
