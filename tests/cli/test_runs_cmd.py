"""`orchestrator runs ...` as a user calls them, on runs made by `orchestrator run` with the fake agent."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import yaml

from orchestrator.proc import child_env, run_command
from orchestrator.testing.checkout import snapshot_checkout

APPROVE = '```json\n{"verdict": "approve", "findings": []}\n```'


class Cli:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.repo = tmp_path / "repo"
        self.repo.mkdir()
        run_command(["git", "init", "-q", "-b", "main"], self.repo, check=True)
        (self.repo / "README.md").write_text("# r\n")
        run_command(["git", "add", "-A"], self.repo, check=True)
        run_command(
            ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-q", "-m", "i"],
            self.repo,
            check=True,
        )
        self.workflow = tmp_path / "wf.yaml"
        self.workflow.write_text(
            yaml.safe_dump(
                {"steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]}
            )
        )
        self.env = child_env(os.environ, {"ORCHESTRATOR_HOME": str(tmp_path / "state"), "CI": "true"})

    def config_for(self, name: str, turns: list) -> Path:
        scenario = self.tmp / f"{name}.scenario.yaml"
        scenario.write_text(yaml.safe_dump({"turns": turns}))
        config = self.tmp / f"{name}.config.yaml"
        config.write_text(
            yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
        )
        return config

    def __call__(self, *args: str, cwd: Path | None = None):
        return run_command(
            [sys.executable, "-m", "orchestrator", *args], cwd or self.repo, env=self.env, timeout_s=120
        )

    def run(self, name: str, path: str, config: Path | None = None, **kw):
        config = config or self.config_for(
            name,
            [{"write_file": {"path": path, "content": name + "\n"}}, {"text": "done"}, {"text": APPROVE}],
        )
        result = self(
            "run", f"write {path}", "--workflow", str(self.workflow), "--config", str(config), "--json", **kw
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def test_list_show_diff_log(tmp_path):
    cli = Cli(tmp_path)
    report = cli.run("one", "one.txt")
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [report["run_id"]] and listed[0]["status"] == "approved"
    shown = json.loads(cli("runs", "show", "last", "--json").stdout)
    assert shown["run_id"] == report["run_id"] and shown["steps"][0]["files_changed"] == ["one.txt"]
    prefix = report["run_id"][:17]
    diff = json.loads(cli("runs", "diff", prefix, "--json").stdout)
    assert diff["files"] == ["one.txt"] and "+one" in diff["diff"]
    log = json.loads(cli("runs", "log", "last", "--json").stdout)
    assert [c["trailers"]["Orchestrator-Step"] for c in log] == ["i1-s1-implement"]
    missing = cli("runs", "show", "nosuchrun")
    assert missing.returncode == 2 and "runs list" in missing.stderr


def test_rollback_keeps_what_it_removes(tmp_path):
    cli = Cli(tmp_path)
    report = cli.run("one", "one.txt")
    tip = report["steps"][0]["commit"]
    rolled = json.loads(cli("runs", "rollback", "last", "--to", "base", "--json").stdout)
    assert rolled["head"] != tip
    assert run_command(["git", "rev-parse", report["branch"]], cli.repo).stdout.strip() == rolled["head"]
    kept = run_command(["git", "rev-parse", rolled["backup_ref"]], cli.repo).stdout.strip()
    assert run_command(["git", "merge-base", "--is-ancestor", tip, kept], cli.repo).returncode == 0


def test_merge_refuses_over_uncommitted_changes_then_merges(tmp_path):
    cli = Cli(tmp_path)
    cli.run("one", "one.txt")
    (cli.repo / "one.txt").write_text("the user's own draft\n")  # would be overwritten by the merge
    before = snapshot_checkout(cli.repo)
    refused = cli("runs", "merge", "last")
    assert refused.returncode == 2 and "one.txt" in refused.stderr
    assert snapshot_checkout(cli.repo) == before
    (cli.repo / "one.txt").unlink()
    merged = json.loads(cli("runs", "merge", "last", "--json").stdout)
    assert merged["fast_forward"] and (cli.repo / "one.txt").read_text() == "one\n"


def test_discard_keeps_the_commits_reachable(tmp_path):
    cli = Cli(tmp_path)
    report = cli.run("one", "one.txt")
    discarded = json.loads(cli("runs", "discard", "last", "--json").stdout)
    assert run_command(["git", "rev-parse", "--verify", report["branch"]], cli.repo).returncode != 0
    kept = run_command(["git", "show", f"{discarded['backup_ref']}:one.txt"], cli.repo).stdout
    assert kept == "one\n"


def test_two_runs_on_one_repo_at_the_same_time(tmp_path):
    cli = Cli(tmp_path)
    before = snapshot_checkout(cli.repo)
    configs = {
        name: cli.config_for(
            name,
            [
                {"write_file": {"path": f"{name}.txt", "content": name + "\n"}},
                {"shell": "sleep 1"},
                {"text": "done"},
                {"text": APPROVE},
            ],
        )
        for name in ("left", "right")
    }
    reports: dict[str, dict] = {}

    def go(name: str) -> None:
        reports[name] = cli.run(name, f"{name}.txt", config=configs[name])

    threads = [threading.Thread(target=go, args=(n,)) for n in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {r["status"] for r in reports.values()} == {"approved"}
    assert reports["left"]["branch"] != reports["right"]["branch"]
    for name, report in reports.items():
        files = run_command(["git", "ls-tree", "--name-only", report["branch"]], cli.repo).stdout.split()
        assert f"{name}.txt" in files and ({"left", "right"} - {name}).pop() + ".txt" not in files
    assert snapshot_checkout(cli.repo) == before


def test_a_run_outside_any_repository_gets_a_repository_of_its_own(tmp_path):
    cli = Cli(tmp_path)
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    config = cli.config_for(
        "x", [{"write_file": {"path": "x.txt", "content": "x\n"}}, {"text": "done"}, {"text": APPROVE}]
    )
    settings = yaml.safe_load(config.read_text())
    settings["workspace_dir"] = str(tmp_path / "ws")
    config.write_text(yaml.safe_dump(settings))
    result = cli(
        "run", "write x", "--workflow", str(cli.workflow), "--config", str(config), "--json", cwd=outside
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    made = Path(report["repo"])
    assert made.parent == tmp_path / "ws" and (made / ".git").exists()
    assert run_command(["git", "show", f"{report['branch']}:x.txt"], made).stdout == "x\n"
    assert list(outside.iterdir()) == []
