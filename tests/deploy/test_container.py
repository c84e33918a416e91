"""The container, checked without a container engine: the Dockerfile lint-clean (hadolint), its CLI
versions the ones orchestrator/adapters/pins.py pins, compose.yaml valid against the Compose
specification's JSON schema (the copy check-jsonschema ships as vendor.compose-spec), and the image's
own start command run on this machine as the container would run it: bubblewrap gives it the image's
paths (the state volume at /var/lib/orchestrator, repositories at /repos, its HOME) and a network of its
own (so `--host 0.0.0.0` reaches nothing outside), setpriv switches to the image's user, and the
environment is the Dockerfile's ENV (plus PATH to where the project is installed here and the token).
The HEALTHCHECK command then runs in the same place, as Docker runs it inside the container.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters.pins import PINNED
from orchestrator.proc import run_command

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
BIN = Path(sys.executable).parent
# The Dockerfile's ARG for each CLI.
VERSION_ARGS = {
    "claude": "CLAUDE_CODE_VERSION",
    "codex": "CODEX_VERSION",
    "gemini": "GEMINI_CLI_VERSION",
    "copilot": "COPILOT_VERSION",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage's lines, continuations joined, comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    parsed = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]
    last_from = max(i for i, (op, _) in enumerate(parsed) if op == "FROM")
    return parsed[last_from:]


def dockerfile_env(ops: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in ops:
        if op == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def the_one(ops: list[tuple[str, str]], name: str) -> str:
    found = [args for op, args in ops if op == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing; `.venv/bin/pip install -e '.[test]'` installs it", pytrace=False)
    return str(path)


def test_dockerfile_is_hadolint_clean():
    result = run_command([tool("hadolint"), str(DOCKERFILE)], ROOT, timeout_s=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install git\nRUN cd /src && pip install .\n")
    result = run_command([tool("hadolint"), str(bad)], tmp_path, timeout_s=60)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3003", "DL3042"):
        assert rule in result.stdout


def test_dockerfile_cli_versions_are_the_pinned_ones():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    drift = {
        agent: (args.get(arg), PINNED[agent].version)
        for agent, arg in VERSION_ARGS.items()
        if args.get(arg) != PINNED[agent].version
    }
    assert not drift, (
        f"Dockerfile ARG vs pins.py: {drift}; copy the versions from orchestrator/adapters/pins.py"
    )
    # The build's own check names every pinned package with its ARG.
    for agent, arg in VERSION_ARGS.items():
        assert f'"{PINNED[agent].package}=${{{arg}}}"' in text
    assert "orchestrator install-clis --prefix /opt/orchestrator/clis" in text


def test_the_image_runs_as_a_user_of_its_own_with_the_state_on_a_volume():
    ops = instructions(DOCKERFILE.read_text())
    env = dockerfile_env(ops)
    assert the_one(ops, "USER") == "10001:10001"
    assert json.loads(the_one(ops, "VOLUME")) == [env["ORCHESTRATOR_HOME"]] == ["/var/lib/orchestrator"]
    assert env["ORCHESTRATOR_CLI_DIR"] == "/opt/orchestrator/clis"
    assert json.loads(the_one(ops, "ENTRYPOINT")) + json.loads(the_one(ops, "CMD")) == [
        "orchestrator",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8765",
    ]
    assert "/healthz" in the_one(ops, "HEALTHCHECK")


def check_compose(path: Path) -> tuple[int, str]:
    result = run_command(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)], ROOT, timeout_s=60
    )
    return result.returncode, result.stdout + result.stderr


def test_compose_file_follows_the_compose_specification(tmp_path):
    code, out = check_compose(COMPOSE)
    assert code == 0, out
    # ... and the check does reject what the specification does not allow.
    data = yaml.safe_load(COMPOSE.read_text())
    data["services"]["orchestrator"]["restart_policy"] = "sometimes"
    data["services"]["grafana"]["ports"] = "3000"
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(data))
    code, out = check_compose(broken)
    assert code != 0 and "restart_policy" in out


def test_compose_wires_the_dashboard_prometheus_and_grafana():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) >= {"orchestrator", "prometheus", "grafana"}
    orchestrator = services["orchestrator"]
    assert "orchestrator-state:/var/lib/orchestrator" in orchestrator["volumes"]
    assert any(v.endswith(":/repos") for v in orchestrator["volumes"])
    assert "ORCHESTRATOR_UI_TOKEN" in orchestrator["environment"]
    assert "./monitoring:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    # Prometheus scrapes the service by its compose name, on the port the image's command serves.
    scrape = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())["scrape_configs"]
    targets = [t for job in scrape for c in job["static_configs"] for t in c["targets"]]
    assert "orchestrator:8765" in targets
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))


def parent_dirs(paths: list[Path]) -> list[str]:
    """bwrap arguments making each path's parents readable (bwrap would make them mode 0700)."""
    parents = sorted({str(p) for path in paths for p in path.parents if str(p) != "/"}, key=len)
    return [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]


def test_the_images_start_command_runs_here_as_in_the_container(tmp_path):
    ops = instructions(DOCKERFILE.read_text())
    env = dockerfile_env(ops)
    uid, gid = the_one(ops, "USER").split(":")
    workdir = [args for op, args in ops if op == "WORKDIR"][-1]  # the one in force at the start
    command = json.loads(the_one(ops, "ENTRYPOINT")) + json.loads(the_one(ops, "CMD"))
    healthcheck = json.loads(the_one(ops, "HEALTHCHECK").split(" CMD ", 1)[1])
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    assert bwrap and setpriv, "bubblewrap and util-linux's setpriv are needed (scripts/setup.sh test)"

    # The volume, the repositories and HOME, owned by the image's user as the Dockerfile makes them.
    mounts = {"state": env["ORCHESTRATOR_HOME"], "repos": workdir, "home": env["HOME"]}
    binds: list[str] = []
    for name, target in mounts.items():
        (tmp_path / name).mkdir()
        os.chown(tmp_path / name, int(uid), int(gid))
        binds += ["--bind", str(tmp_path / name), target]
    python_home = Path(sys.base_prefix).resolve()
    environment = {
        **env,
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",  # the project's install here; /usr/local/bin there
        "ORCHESTRATOR_UI_TOKEN": "container-test-token-0123456789",
    }
    # Start the command, then run the HEALTHCHECK until it passes or the command exits.
    script = f"""
echo "as uid=$(id -u) gid=$(id -g) home=$HOME cwd=$(pwd) state=$ORCHESTRATOR_HOME"
{shlex.join(command)} &
pid=$!
i=0
while [ $i -lt 120 ]; do
  if {shlex.join(healthcheck)} 2>/dev/null; then echo HEALTHY; kill $pid; wait $pid; echo "STOPPED $?"; exit 0; fi
  if ! kill -0 $pid 2>/dev/null; then wait $pid; echo "EXITED $?"; exit 1; fi
  sleep 0.5; i=$((i + 1))
done
echo UNHEALTHY; kill $pid; wait $pid; exit 1
"""
    argv = [
        bwrap,
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        "--tmpfs", "/",
        "--ro-bind", "/usr", "/usr",
        "--ro-bind", "/etc", "/etc",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        *parent_dirs([python_home, ROOT, *[Path(t) for t in mounts.values()]]),
        "--ro-bind", str(python_home), str(python_home),
        "--ro-bind", str(ROOT), str(ROOT),
        *binds,
        "--chdir", workdir,
        "--clearenv",
        *[arg for key, value in environment.items() for arg in ("--setenv", key, value)],
        "--",
        setpriv, "--reuid", uid, "--regid", gid, "--clear-groups", "--",
        "/bin/sh", "-c", script,
    ]  # fmt: skip
    result = run_command(argv, tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout_s=180)
    out = result.stdout + result.stderr
    assert (
        f"as uid={uid} gid={gid} home={env['HOME']} cwd={workdir} state={env['ORCHESTRATOR_HOME']}" in out
    ), out
    assert result.returncode == 0 and "HEALTHY" in out, out
    # It ran as the image's user, with its state on the volume.
    assert any((tmp_path / "state").iterdir()), out
    # `docker stop` sends SIGTERM: the dashboard stops as on Ctrl-C (its runs left resumable), 130.
    assert "stopping the dashboard" in out and "STOPPED 130" in out, out
