from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog

from orchestrator.logs import (
    MASK,
    SecretMasker,
    configure_logging,
    event_logger,
    get_logger,
    reset_logging,
    run_log,
)

# Long, unique, made up: never a real credential.
API_KEY = "test-anthropic-key-9c1d7e2f4a6b8d0e3f5a7c9e1b3d5f7a"
GH_TOKEN = "ghp_T3stT0kenF0rLogs8a7b6c5d4e3f2a1b0c9d8"
OPENAI = "sk-proj-t3stK3yForLogsQ9w8e7r6t5y4u3i2o1p"
GOOGLE = "AIzaSyT3stK3yF0rL0gs-abcdefghijklmnopqrs"
ENV = {
    "ANTHROPIC_API_KEY": API_KEY,
    "GH_TOKEN": GH_TOKEN,
    "DB_PASSWORD": 'hunter2"but\\longer-7781',  # JSON escapes both: it must be masked before rendering
    "CLIENT_SECRET": "client-secret-value-5521",
    "SHORT_TOKEN": "abc",  # too short to mask by value
    "PATH": "/usr/bin:/bin",  # not a secret name
    "MONKEY": "banana-bread-recipe",  # ends in KEY: named like a secret, so masked
}


class _Client:
    def __repr__(self) -> str:
        return f"<Client {API_KEY}>"


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    level = root.level
    yield
    reset_logging()
    root.setLevel(level)


def test_masker_values_and_patterns():
    masker = SecretMasker(ENV)
    text = (
        f"key={API_KEY} gh={GH_TOKEN} db={ENV['DB_PASSWORD']} c=client-secret-value-5521 "
        f"openai={OPENAI} google={GOOGLE} Authorization: Bearer eyJhbGciOi.J9x-y_z abc /usr/bin:/bin "
        "banana-bread-recipe github_pat_11ABCDEFG0123456789_abcdefghijklmnop"
    )
    masked = masker.mask(text)
    for secret in (
        API_KEY,
        GH_TOKEN,
        "hunter2",
        "client-secret-value",
        OPENAI,
        GOOGLE,
        "eyJhbGciOi",
        "banana",
    ):
        assert secret not in masked
    assert "github_pat_11ABC" not in masked
    assert f"key={MASK} " in masked and "Authorization: Bearer ***" in masked
    assert " abc /usr/bin:/bin " in masked  # short values and non-secret names are left alone


def test_masker_on_structures_and_overlapping_values():
    masker = SecretMasker({"A_KEY": "prefix-secret", "B_KEY": "prefix-secret-and-more"})
    # The longer value is masked whole, not left as "***-and-more".
    assert masker.mask("x prefix-secret-and-more y") == f"x {MASK} y"
    nested = {"a": ["prefix-secret", 3, ("bearer abcdefghijk",)], "n": None}
    assert masker.mask_value(nested) == {"a": [MASK, 3, (f"bearer {MASK}",)], "n": None}


def test_json_lines_to_a_file_with_secrets_masked(tmp_path, caplog):
    log_file = tmp_path / "logs" / "orchestrator.log"
    configure_logging("info", json=True, file=log_file, env=ENV)
    log = get_logger("orchestrator.test", run_id="r1")
    log.info("calling the api", header=f"Bearer {API_KEY}", argv=["claude", "--key", API_KEY])
    log.debug("hidden at info level")
    log.info("connecting", password=ENV["DB_PASSWORD"], client=_Client())
    logging.getLogger("werkzeug").warning("token %s from %s", GH_TOKEN, "a third party")
    try:
        raise RuntimeError(f"401 for {OPENAI}")
    except RuntimeError:
        log.exception("step failed")

    # Other handlers on the root logger (here pytest's) get our records masked too.
    assert API_KEY not in caplog.text and OPENAI not in caplog.text and "step failed" in caplog.text
    text = log_file.read_text(encoding="utf-8")
    for secret in (API_KEY, GH_TOKEN, OPENAI):
        assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["event"] for r in records] == [
        "calling the api",
        "connecting",
        f"token {MASK} from a third party",
        "step failed",
    ]
    first = records[0]
    assert (first["level"], first["logger"], first["run_id"]) == ("info", "orchestrator.test", "r1")
    assert first["header"] == f"Bearer {MASK}" and first["argv"] == ["claude", "--key", MASK]
    assert "timestamp" in first
    assert "hunter2" not in text and records[1]["password"] == MASK
    assert records[1]["client"] == f"<Client {MASK}>"  # an object is rendered by repr(), then masked
    assert records[2]["level"] == "warning" and records[2]["logger"] == "werkzeug"
    assert "RuntimeError: 401 for sk-***" in records[3]["exception"]


def test_plain_text_to_stderr_and_reconfiguring_replaces_the_handler(capsys):
    configure_logging("warning", json=False, env=ENV)
    configure_logging("debug", json=False, env=ENV)  # a second call must not log twice
    get_logger().debug("using key", key=API_KEY)
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout belongs to --json reports
    assert captured.err.count("using key") == 1
    assert API_KEY not in captured.err and f"key={MASK}" in captured.err
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "orchestrator"]
    assert len(ours) == 1


def test_reset_logging_removes_the_handler(tmp_path):
    configure_logging("info", json=True, file=tmp_path / "x.log", env=ENV)
    reset_logging()
    assert not [h for h in logging.getLogger().handlers if h.get_name() == "orchestrator"]
    assert structlog.is_configured() is False


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_human_on_a_terminal_and_json_otherwise(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    configure_logging("info", env=ENV)
    get_logger().info("on a terminal", key=API_KEY)
    assert "on a terminal" in terminal.getvalue() and not terminal.getvalue().startswith("{")
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    configure_logging("info", env=ENV)
    get_logger().info("piped")
    assert json.loads(piped.getvalue())["event"] == "piped"
    assert API_KEY not in terminal.getvalue()


def test_run_log_keeps_only_its_runs_lines_and_binds_them(tmp_path):
    configure_logging("warning", json=True, file=tmp_path / "all.log", env=ENV)
    path = tmp_path / "runs" / "r1" / "log.jsonl"
    with run_log(path, "r1", masker=SecretMasker(ENV)):
        get_logger("orchestrator.x").info("inside", token=GH_TOKEN)  # bound to r1 by the context
        get_logger("orchestrator.x").info("other run", run_id="r2")
    get_logger("orchestrator.x").info("after", run_id="r1")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["event"], r["run_id"]) for r in records] == [("inside", "r1")]
    assert records[0]["token"] == MASK
    # The console's level (warning) kept info lines out of the main log.
    assert not (tmp_path / "all.log").exists() or "inside" not in (tmp_path / "all.log").read_text()


def test_event_logger_names_what_happens(tmp_path):
    from orchestrator.events import Notice, RunFinished, StepFinished

    log_file = tmp_path / "x.log"
    configure_logging("info", json=True, file=log_file, env=ENV)
    on_event = event_logger()
    on_event(
        StepFinished(run_id="r1", step_id="i1-s1-implement", agent="claude", status="succeeded", commit="abc")
    )
    on_event(Notice(run_id="r1", text="t", kind="fallback", agent="claude", reason="auth", level="warning"))
    on_event(RunFinished(run_id="r1", status="cancelled", stop_reason="cancelled", branch="b"))
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r["event"] for r in records] == ["commit", "step finished", "fallback", "run cancelled"]
    assert records[0]["step_id"] == "i1-s1-implement" and records[0]["agent"] == "claude"
    assert records[2]["notice_level"] == "warning" and records[3]["status"] == "cancelled"
    # All at info: at the default level the console renderer alone tells people about the run.
    assert {r["level"] for r in records} == {"info"}


def test_notices_during_a_step_are_bound_to_it(tmp_path):
    from orchestrator.events import Notice, StepFinished, StepStarted

    log_file = tmp_path / "x.log"
    configure_logging("info", json=True, file=log_file, env=ENV)
    on_event = event_logger()
    step = "i1-s1-implement"
    on_event(
        Notice(run_id="r1", text="claude is not ready", kind="fallback", agent="claude", reason="not_ready")
    )
    on_event(StepStarted(run_id="r1", step_id=step, agent="fake", task="implement", iteration=1))
    on_event(Notice(run_id="r1", text="rate limited; again in 1 s", kind="retry", reason="rate_limit"))
    on_event(Notice(run_id="r2", text="another run's", kind="retry", reason="git_lock"))
    on_event(StepFinished(run_id="r1", step_id=step, agent="fake", status="succeeded"))
    on_event(Notice(run_id="r1", text="after the step"))
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    bound = [
        (r["event"], r["run_id"], r.get("step_id"), r.get("agent"))
        for r in records
        if r["event"] != "step started"
    ]
    assert bound == [
        ("fallback", "r1", None, "claude"),  # chosen before its step starts
        ("retry", "r1", step, "fake"),
        ("retry", "r2", None, None),
        ("step finished", "r1", step, "fake"),
        ("notice", "r1", None, None),
    ]


def test_a_store_fault_under_a_run_is_a_line_bound_to_the_run(tmp_path):
    """The store fails while a run writes its events (a full disk, here made up by the store): the run
    is stopped, and the log says so in a line of that run."""
    import os

    import yaml

    from orchestrator.config import settings_from_data
    from orchestrator.engine.service import RunService, RunSpec
    from orchestrator.errors import OrchestratorError
    from orchestrator.proc import run_command
    from orchestrator.store import Store
    from orchestrator.store.faults import store_error

    class FillsUp(Store):
        writes = 0

        def add_event(self, run_id, event):  # type: ignore[no-untyped-def]
            type(self).writes += 1
            if type(self).writes > 6:
                raise store_error("disk_full", self.path)
            return super().add_event(run_id, event)

    repo = tmp_path / "repo"
    repo.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    (repo / "README.md").write_text("# r\n")
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "i"], repo, check=True)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump({"turns": [{"write_file": {"path": "a", "content": "a"}}, {"text": "ok"}]})
    )
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(yaml.safe_dump({"steps": [{"agent": "fake", "task": "implement"}]}))
    settings = settings_from_data(
        {"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}}
    )
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")}
    log_file = tmp_path / "orchestrator.log"
    configure_logging("info", json=True, file=log_file, env=ENV)
    (tmp_path / "state").mkdir()
    service = RunService(settings=settings, env=env, store=FillsUp(tmp_path / "state" / "state.db"))
    try:
        record = service.create(RunSpec(task="t", cwd=repo, workflow=str(workflow)))
        with pytest.raises(OrchestratorError, match="disk is full"):
            service.execute(record.id)
    finally:
        service.close()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    faults = [r for r in records if r["event"] == "store fault"]
    assert faults and faults[0]["run_id"] == record.id and faults[0]["problem"] == "disk_full"
    assert faults[0]["level"] == "error" and faults[0]["path"].endswith("state.db")


def test_the_dashboards_request_lines_go_through_our_handler_masked_and_plain(tmp_path):
    """werkzeug logs each request itself, in colour, on a handler of its own, token and all (the
    dashboard's sign-in URL carries it); configured, its lines are ours: at our level, masked, plain."""
    from werkzeug._internal import _log

    log_file = tmp_path / "x.log"
    configure_logging("info", json=True, file=log_file, env={})
    fresh = "fresh-dashboard-token-nobody-knows-0123"  # not in any environment the masker read
    line = f"\x1b[32mGET /?token={fresh}&run=r1 HTTP/1.1\x1b[0m"
    _log("info", '%s - - [%s] "%s" %s %s', "127.0.0.1", "02/Dec/2026 10:00:00", line, "303", "-")
    server = logging.getLogger("werkzeug")
    assert not server.handlers  # none of werkzeug's own: ours (on the root) took the line
    (record,) = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert record["event"] == '127.0.0.1 - - [02/Dec/2026 10:00:00] "GET /?token=***&run=r1 HTTP/1.1" 303 -'
    assert record["logger"] == "werkzeug" and fresh not in log_file.read_text()
    # At the default level (warning) request lines are not logged at all.
    configure_logging("warning", json=True, file=log_file, env={})
    _log("info", '"%s" %s %s', "GET /metrics HTTP/1.1", "200", "-")
    assert len(log_file.read_text().splitlines()) == 1
