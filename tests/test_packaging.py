"""The repository's shape: compose file, Dockerfiles and console scripts agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {
    "reconciler": "arks-reconciler",
    "router": "arks-router",
    "accountant": "arks-accountant",
    "model-cache": "arks-model-cache",
    "engine-sim": "arks-engine-sim",
}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_names_every_service_with_image_and_healthcheck() -> None:
    services = _compose()["services"]
    assert set(services) == {"nats", "valkey", *SERVICES}
    for name, spec in services.items():
        assert spec.get("image"), f"{name} has no image"
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "-js" in services["nats"]["command"]


def test_compose_services_wait_for_healthy_dependencies() -> None:
    services = _compose()["services"]
    for name in ("reconciler", "router", "accountant", "model-cache"):
        depends = services[name]["depends_on"]
        assert depends["nats"] == {"condition": "service_healthy"}, name
    for name in ("router", "accountant"):
        assert services[name]["depends_on"]["valkey"] == {"condition": "service_healthy"}


def test_compose_probes_health_ports_and_publishes_none_of_them() -> None:
    services = _compose()["services"]
    for name in ("reconciler", "router", "accountant", "model-cache"):
        port = services[name]["environment"]["ARKS_HEALTH__PORT"]
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])
        assert all(not str(p).endswith(f":{port}") for p in services[name].get("ports", [])), name
    assert services["router"]["ports"] == ["8080:8080"]  # the OpenAI API only


def test_each_dockerfile_installs_only_its_member_and_runs_its_script() -> None:
    services = _compose()["services"]
    for directory, package in SERVICES.items():
        build = services[directory]["build"]
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile == ROOT / "services" / directory / "Dockerfile"
        text = dockerfile.read_text()
        synced = re.findall(r"uv sync [^\n]*", text)
        assert synced
        members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
        for member in members["members"]:
            # uv's workspace discovery needs every member's pyproject.toml
            assert f"COPY {member}/pyproject.toml {member}/" in text, (dockerfile, member)
        assert all(f"--package {package}" in line for line in synced)
        assert all("--all-packages" not in line for line in synced)
        entry = re.search(r'ENTRYPOINT \["([^"]+)"\]', text)
        assert entry is not None
        project = tomllib.loads((ROOT / "services" / directory / "pyproject.toml").read_text())
        assert entry.group(1) in project["project"]["scripts"]


def test_workspace_members_are_explicit_and_exist() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "project" not in root, "the workspace root is virtual"
    members = root["tool"]["uv"]["workspace"]["members"]
    assert all("*" not in m for m in members)
    scripts: set[str] = set()
    for member in members:
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())
        scripts |= set(project["project"].get("scripts", {}))
        package = project["project"]["name"].replace("-", "_")
        assert (ROOT / member / "src" / package / "__init__.py").is_file(), member
    assert scripts == {
        "arks-reconciler",
        "arks-router",
        "arks-accountant",
        "arks-model-cache",
        "arks-engine-sim",
        "arks-devcluster",
        "arks",
    }


def test_makefile_front_door() -> None:
    text = (ROOT / "Makefile").read_text()
    assert ".DEFAULT_GOAL := help" in text
    for target in ("run", "test", "lint", "fmt", "crds", "bench", "clean", "help"):
        assert re.search(rf"^{target}:.*## ", text, re.M), (
            f"make {target} is missing or undocumented"
        )
    assert "uv sync --locked" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci
    assert "make test" in ci


def test_every_benchmark_exposes_an_async_run(monkeypatch) -> None:
    import importlib
    import inspect

    monkeypatch.syspath_prepend(str(ROOT))  # `make bench` runs `python -m bench` from here
    names = sorted(p.stem for p in (ROOT / "bench").glob("b_*.py"))
    assert {"b_engine_sim", "b_accountant", "b_model_cache", "b_router"} <= set(names)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        assert inspect.iscoroutinefunction(module.run), name
