"""A cluster for the tests: the session's Temporal dev server and PostgreSQL server, a fresh database
and task-queue prefix per test (so tests never see each other's runs or workers), a real git
repository, the fake agent, and `orchestrator worker` processes each with a state home of its own (as
if on machines of their own)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.proc import CommandResult, run_command
from orchestrator.store import Store
from orchestrator.testing.cluster import (
    APPROVE as APPROVE,  # the tests import it from here
)
from orchestrator.testing.cluster import (
    OrchestratorProcess,
    WorkerProcess,
    cluster_env,
    make_repo,
    start_worker,
    submit_run,
    write_cluster_config,
)
from orchestrator.testing.temporal import TemporalDevServer


class Cluster:
    def __init__(self, tmp_path: Path, temporal: TemporalDevServer, database: str) -> None:
        self.tmp = tmp_path
        self.database = database
        self.temporal = temporal
        self.repo = make_repo(tmp_path / "repo")
        self.workflow = tmp_path / "wf.yaml"
        self.workflow.write_text(
            yaml.safe_dump(
                {
                    "max_iterations": 1,
                    "steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
                }
            )
        )
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.agent: dict[str, Any] = {"timeout_s": 120, "idle_timeout_s": 120}
        self.agents: dict[str, Any] = {}
        self.temporal_address = temporal.address
        self.heartbeat_timeout_s = 30.0
        self.keep_finished_runs_s: float | None = None  # None: the default
        self.workers: list[WorkerProcess] = []
        self.processes: list[OrchestratorProcess] = []
        self.write_config()
        self.env = cluster_env(tmp_path, "submitter")

    def write_config(self) -> Path:
        self.config = write_cluster_config(
            self.tmp / "config.yaml",
            temporal=self.temporal_address,
            database=self.database,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            task_queue_prefix=self.prefix,
            keep_finished_runs_s=self.keep_finished_runs_s,
            extra={
                "agents": {"fake": self.agent, **self.agents},
                "fallback_order": ["fake"],
                "workflow": str(self.workflow),
            },
        )
        return self.config

    def use_scenario(self, turns: list[dict[str, Any]]) -> None:
        """The fake agent plays these turns (one cursor shared by every step of every run)."""
        scenario = self.tmp / "scenario.yaml"
        scenario.write_text(yaml.safe_dump({"turns": turns}))
        self.agent["env"] = {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}
        self.write_config()

    def agent_config(self, name: str, config: dict[str, Any]) -> None:
        self.agents[name] = config
        self.write_config()

    def cli(self, *args: str) -> CommandResult:
        """`orchestrator ARGS --config CONFIG` in the repository, to its end."""
        argv = [sys.executable, "-m", "orchestrator", *args, "--config", str(self.config)]
        return run_command(argv, self.repo, env=self.env, timeout_s=300)

    def resume_to_approval(self, run_id: str) -> None:
        """`runs resume RUN`: it exits 0 and the run is approved, its two steps succeeded."""
        resumed = self.cli("runs", "resume", run_id)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        with Store(self.database) as store:
            assert store.get_run(run_id).status == "approved"
            assert [(s.step_id, s.status) for s in store.steps(run_id)] == [
                ("i1-s1-implement", "succeeded"),
                ("i1-s2-review", "succeeded"),
            ]

    def cli_git(self, *args: str) -> str:
        return run_command(["git", *args], self.repo, env=self.env, check=True).stdout

    def worker(self, name: str, **kwargs: Any) -> WorkerProcess:
        worker = start_worker(self.config, cluster_env(self.tmp, name), cwd=self.tmp, name=name, **kwargs)
        self.workers.append(worker)
        return worker

    def submit(
        self, task: str = "make greet() return Hello", extra: tuple[str, ...] = ("--json",)
    ) -> OrchestratorProcess:
        process = submit_run(self.config, self.env, task, cwd=self.repo, extra=extra)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def cluster(tmp_path: Path, temporal_server: TemporalDevServer, postgres_url: str) -> Iterator[Cluster]:
    world = Cluster(tmp_path, temporal_server, postgres_url)
    try:
        yield world
    finally:
        world.close()
