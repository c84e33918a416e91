"""The dashboard as a person uses it, in a real headless Chromium against a live `orchestrator serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import pytest
from playwright.sync_api import expect

from orchestrator.adapters.base import cli_cache_bin_dir

from .browser import Console, chromium
from .conftest import APPROVE, CHANGES, free_port

FIXED = {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}}


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def open_page(browser, server, path="/"):
    page = browser.new_page()
    console = Console(page)
    page.goto(server.login_url)  # the printed URL: the token becomes a cookie, then leaves the URL
    assert "token=" not in page.url
    if path != "/":
        page.goto(server.base + path)
    return page, console


def seqs(page):
    return [
        int(s)
        for s in page.eval_on_selector_all("#timeline li.ev[data-seq]", "els => els.map(e => e.dataset.seq)")
    ]


# Notifications as the page sees them once the user allowed them (headless Chromium shows none).
NOTIFICATIONS = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push([title, options && options.body]); }
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""


def test_start_a_run_from_the_page_and_follow_it_to_approved(world, browser):
    world.set_turns(
        [
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'hi!'\n"}},
            {"hang": 2},  # the page is open before the run ends
            {"text": "first try"},
            {"text": CHANGES},
            FIXED,
            {"text": "fixed"},
            {"text": APPROVE},
        ]
    )
    server = world.serve()
    page, console = open_page(browser, server, "/new")
    page.add_init_script(NOTIFICATIONS)
    expect(page.locator("#new-repo")).to_have_value(str(world.repo))
    page.fill("#new-task", "make greet() return Hello")
    expect(page.locator("#new-command")).to_contain_text(
        "orchestrator run 'make greet() return Hello' --repo"
    )
    page.click("button[type=submit]")
    page.wait_for_url("**/runs/*")
    page.evaluate("window.__same_page = true")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#act-notify")).to_have_text("Notifications on")
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=120_000)
    assert page.evaluate("window.__same_page") is True  # no reload
    # The run ended while the page watched it: a badge in the tab's title and one notification.
    expect(page).to_have_title(re.compile(r"^\[approved\] Run "))
    assert page.evaluate("window.__notes") == [["Run approved", "make greet() return Hello (approved)"]]
    expect(page.locator("#timeline li.run_finished")).to_contain_text("approved")
    assert seqs(page) == list(range(1, len(seqs(page)) + 1))
    assert "[object" not in page.inner_text("#timeline")  # every part of a row rendered as text
    # A commit row: the step, its status, the short sha and the files, each as text (once it read
    # "commit ,[object HTMLElement] (calc.py)").
    run_id = page.url.rsplit("/", 1)[1]
    steps = {st["id"]: st for st in server.get(f"/api/runs/{run_id}")["steps"]}
    for step_id in ("i1-s1-implement", "i1-s3-refine"):
        sha = steps[step_id]["commit"]
        row = page.locator(f"#timeline li.step_finished:has(strong:text-is('■ {step_id}')) .body")
        expect(row).to_have_text(f"■ {step_id} succeeded commit {sha[:10]} (app.py)")
        expect(row.locator("code.commit")).to_have_attribute("title", sha)
    # A step's diff, then a finding's line in the whole run's diff.
    page.click("#steps tr[data-step=i1-s1-implement] button:has-text('diff')")
    expect(page.locator("#diff-title")).to_have_text("of step i1-s1-implement")
    expect(page.locator("#diff-files .d2h-file-wrapper")).to_have_count(1)
    expect(page.locator("#diff-files")).to_contain_text("hi!")
    finding = page.locator("#findings li").first
    expect(finding).to_contain_text("greet() must return Hello")
    expect(finding).to_contain_text("addressed in i1-s3-refine")
    finding.locator("button:has-text('app.py:2')").click()
    expect(page.locator("#diff-title")).to_have_text("of the whole run")
    expect(page.locator("tr.finding-line")).to_contain_text("return 'Hello'")
    assert [e for e in console.errors if "Content Security Policy" in e or "Refused" in e] == []


def test_a_run_from_another_process_appears_and_updates_live(world, browser):
    world.set_turns([FIXED, {"hang": 2}, {"text": "done"}, {"text": APPROVE}])
    server = world.serve()
    page, _ = open_page(browser, server)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#runs-empty")).to_be_visible()
    terminal = world.run_in_terminal()
    row = page.locator("#runs tbody tr").first
    expect(row.locator(".status")).to_have_text("running", timeout=30_000)
    expect(row.locator(".status")).to_have_text("approved", timeout=120_000)
    assert terminal.join(60).exit_code == 0


def test_cancel_a_hung_run_from_the_page(world, browser):
    world.set_turns([{"hang": 600}])
    terminal = world.run_in_terminal()
    server = world.serve()
    run_id = server.wait_for_runs(1)[0]["id"]
    page, _ = open_page(browser, server, f"/runs/{run_id}")
    expect(page.locator("#timeline li.step_started")).to_have_count(1, timeout=30_000)
    page.click("#act-cancel")
    expect(page.locator("#action-message")).to_contain_text("cancel requested")
    expect(page.locator("#run-status .status")).to_have_text("cancelled", timeout=60_000)
    result = terminal.join(60)
    assert result is not None and result.exit_code == 130  # and conftest checks no process is left


def test_a_run_whose_process_died_is_shown_interrupted_filtered_and_resumed(world, browser):
    world.set_turns([FIXED, {"text": "done"}, {"text": APPROVE}])
    assert world.run_in_terminal("the first run").join(120).exit_code == 0
    world.set_turns([{"hang": 600}])
    terminal = world.run_in_terminal("the run that dies")
    server = world.serve()
    runs = server.wait_for_runs(2)
    dying = next(r for r in runs if r["task"] == "the run that dies")
    page, _ = open_page(browser, server, f"/runs/{dying['id']}")
    expect(page.locator("#timeline li.step_started")).to_have_count(1, timeout=30_000)
    expect(page.locator("#act-cancel")).to_be_visible()
    os.kill(dying["owner_pid"], signal.SIGKILL)  # `orchestrator run` is gone; its agent goes with it
    expect(page.locator("#run-status .status")).to_have_text("interrupted", timeout=30_000)
    expect(page.locator("#timeline li.notice .body").last).to_have_text(
        f"run interrupted: its orchestrator process ({dying['owner_pid']}) is gone"
    )
    expect(page.locator("#act-cancel")).to_be_hidden()
    expect(page.locator("#act-resume")).to_be_visible()
    terminal.join(30)
    # The list, filtered by status.
    page.goto(server.base + "/")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(2)
    page.select_option("#filter-status", "interrupted")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.task")).to_have_text("the run that dies")
    page.select_option("#filter-status", "approved")
    expect(rows.first.locator("td.task")).to_have_text("the first run")
    expect(rows).to_have_count(1)
    page.select_option("#filter-status", "cancelled")
    expect(rows).to_have_count(0)
    expect(page.locator("#runs-empty")).to_be_visible()
    page.select_option("#filter-status", "")
    page.select_option("#filter-repo", str(world.repo.resolve()))
    expect(rows).to_have_count(2)
    # Resumed from the page, by the dashboard: it goes on to approved.
    world.set_turns([FIXED, {"text": "done"}, {"text": APPROVE}])
    page.goto(f"{server.base}/runs/{dying['id']}")
    page.click("#act-resume")
    expect(page.locator("#action-message")).to_have_text("resumed")
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=120_000)


def test_follow_up_and_merge_from_the_page(world, browser):
    world.set_turns(
        [
            FIXED,
            {"text": "done"},
            {"text": APPROVE},
            {"write_file": {"path": "bye.py", "content": "x = 1\n"}},
            {"text": "bye"},
            {"text": APPROVE},
        ]
    )
    assert world.run_in_terminal().join(120).exit_code == 0
    server = world.serve()
    run_id = server.get("/api/runs")[0]["id"]
    page, _ = open_page(browser, server, f"/runs/{run_id}")
    expect(page.locator("#run-status .status")).to_have_text("approved")
    # A follow-up the server never got is not shown as sent (the request dies on the way).
    page.route("**/follow-up", lambda route: route.abort("connectionreset"))
    page.fill("#follow-up-text", "also add bye.py")
    page.click("#follow-up button")
    expect(page.locator("#action-message")).to_have_attribute("data-kind", "error")
    expect(page.locator("#timeline li.follow-up-sent")).to_have_count(0)
    expect(page.locator("#follow-up-text")).to_have_value("also add bye.py")  # kept, to send again
    page.unroute("**/follow-up")
    page.click("#follow-up button")
    expect(page.locator("#timeline li.follow-up-sent .body")).to_have_text("you: also add bye.py (started)")
    expect(page.locator("#timeline li.step_started").last).to_contain_text("i2-s1-implement", timeout=60_000)
    # The follow-up as the event log keeps it (engine/follow_ups.py), not only the page's own note.
    expect(page.locator("#timeline li.follow_up .body")).to_have_text(
        "follow-up from iteration 2: also add bye.py"
    )
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=120_000)
    expect(page.locator("#timeline li.run_finished")).to_have_count(2)
    page.click("#act-merge")
    expect(page.locator("#merge-preview")).to_contain_text("is 2 ahead and 0 behind main")
    expect(page.locator("#merge-preview")).to_contain_text("no conflicts")
    page.click("#merge-go")
    expect(page.locator("#action-message")).to_contain_text("merged into main (fast-forward, 2 files)")
    assert (world.repo / "bye.py").read_text() == "x = 1\n"


def test_the_page_survives_a_server_restart_and_shows_every_missed_event_once(world, browser):
    world.set_turns([FIXED, {"hang": 4}, {"text": "done"}, {"hang": 4}, {"text": APPROVE}])
    port = free_port()
    server = world.serve(port)
    terminal = world.run_in_terminal()
    run_id = server.wait_for_runs(1)[0]["id"]
    page, console = open_page(browser, server, f"/runs/{run_id}")
    expect(page.locator("#timeline li.step_started")).to_have_count(1, timeout=30_000)
    page.evaluate("window.__same_page = true")
    server.process.stop()
    expect(page.locator("#connection")).not_to_have_text("live", timeout=15_000)
    time.sleep(3)  # the run goes on in its own process while no dashboard is up
    server = world.serve(port)
    expect(page.locator("#connection")).to_have_text("live", timeout=30_000)
    assert terminal.join(120).exit_code == 0
    try:
        expect(page.locator("#timeline li.run_finished")).to_have_count(1, timeout=30_000)
    except AssertionError:
        print(
            console.errors,
            page.inner_text("#gap"),
            seqs(page),
            server.get(f"/api/runs/{run_id}/events")["latest"],
        )
        raise
    assert page.evaluate("window.__same_page") is True
    latest = server.get(f"/api/runs/{run_id}/events")["latest"]
    assert seqs(page) == list(range(1, latest + 1))  # every event, once, in order
    expect(page.locator("#gap")).to_be_hidden()


def test_a_run_started_from_the_page_outlives_a_dashboard_restart_and_resumes(world, browser):
    """The dashboard runs what it starts; stopped, it stops them resumable. Started again, the run is
    there, and the page that stayed open resumes it to approved."""
    world.set_turns([{"hang": 600}])
    port = free_port()
    server = world.serve(port)
    page, _ = open_page(browser, server, "/new")
    page.fill("#new-task", "make greet() return Hello")
    page.click("button[type=submit]")
    page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#timeline li.step_started")).to_have_count(1, timeout=30_000)
    server.process.stop()  # Ctrl-C: the dashboard stops its run, resumable
    expect(page.locator("#connection")).not_to_have_text("live", timeout=15_000)
    server = world.serve(port)
    expect(page.locator("#connection")).to_have_text("live", timeout=30_000)
    status = server.get(f"/api/runs/{run_id}")["status"]
    assert status in ("cancelled", "interrupted"), status
    expect(page.locator("#run-status .status")).to_have_text(status, timeout=30_000)
    world.set_turns([FIXED, {"text": "done"}, {"text": APPROVE}])
    page.click("#act-resume")
    expect(page.locator("#action-message")).to_have_text("resumed")
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=120_000)
    latest = server.get(f"/api/runs/{run_id}/events")["latest"]
    assert seqs(page) == list(range(1, latest + 1))  # the page saw it all, once, in order


def test_a_batch_the_page_missed_is_shown_as_a_gap_and_fetched(world, browser):
    """One batch of events is taken off the page's WebSocket (and acknowledged to the server for it):
    the next batch does not continue the page's cursor, so the page says so and fetches what it missed."""
    world.set_turns([FIXED, {"hang": 4}, {"text": "done"}, {"hang": 2}, {"text": APPROVE}])
    server = world.serve()
    terminal = world.run_in_terminal()
    run_id = server.wait_for_runs(1)[0]["id"]
    dropped: list[str] = []

    def route(ws):
        upstream = ws.connect_to_server()

        def from_server(message):
            frame = re.match(r'^42(\d+)\["events",', message) if isinstance(message, str) else None
            if frame and not dropped:
                dropped.append(message)
                upstream.send(f"43{frame.group(1)}[]")  # the ack the page never sent
                return
            ws.send(message)

        upstream.on_message(from_server)

    page = browser.new_page()
    page.route_web_socket(re.compile(r"/socket\.io/"), route)
    page.goto(server.login_url)
    page.goto(f"{server.base}/runs/{run_id}")
    expect(page.locator("#timeline li.run_finished")).to_have_count(1, timeout=120_000)
    assert terminal.join(60).exit_code == 0
    assert dropped, "no batch came over the WebSocket"
    missed = [e["seq"] for e in json.loads(dropped[0][dropped[0].index("[") :])[1]["events"]]
    expect(page.locator("#gap")).to_be_visible()
    expect(page.locator("#gap")).to_have_text(f"recovered missed events up to {missed[-1]}")
    latest = server.get(f"/api/runs/{run_id}/events")["latest"]
    assert seqs(page) == list(range(1, latest + 1))  # every event, once, in order


def test_diffs_load_per_file_generated_ones_collapsed_unified_or_split(world, browser):
    lock = '{"name": "sample", "lockfileVersion": 3}\n'
    world.set_turns(
        [
            {"write_file": {"path": "package-lock.json", "content": lock}},
            FIXED,
            {"text": "done"},
            {"text": APPROVE},
        ]
    )
    assert world.run_in_terminal().join(120).exit_code == 0
    server = world.serve()
    run_id = server.get("/api/runs")[0]["id"]
    page, _ = open_page(browser, server, f"/runs/{run_id}")
    app = page.locator('#diff-files li.diff-file[data-path="app.py"]')
    locked = page.locator('#diff-files li.diff-file[data-path="package-lock.json"]')
    expect(app.locator(".d2h-file-wrapper")).to_have_count(1)
    expect(app.locator(".file-head")).to_contain_text("+1 −1")
    expect(locked.locator(".tag")).to_have_text("generated")
    expect(locked.locator(".file-diff")).to_be_hidden()
    assert locked.locator(".d2h-file-wrapper").count() == 0  # not even fetched
    locked.locator("button:has-text('show')").click()
    expect(locked.locator(".d2h-file-wrapper")).to_have_count(1)
    expect(locked).to_contain_text("lockfileVersion")
    page.check("input[name=diff-format][value=side-by-side]")
    expect(app.locator(".d2h-file-side-diff")).to_have_count(2)  # old | new
    page.check("input[name=diff-format][value=line-by-line]")
    expect(app.locator(".d2h-file-side-diff")).to_have_count(0)


def test_a_failed_gate_opens_on_its_output_with_a_jump_to_the_first_failure(world, browser):
    noise = "".join(f"print('line {n}'); " for n in range(60))
    gate = f"{sys.executable} -c \"{noise}print('FAIL: test_greet'); print('after'); raise SystemExit(1)\""
    world.set_workflow(
        [
            {"agent": "fake", "task": "implement"},
            {"run": gate, "name": "tests"},
            {"agent": "fake", "task": "review"},
        ],
        max_iterations=1,
    )
    world.set_turns([FIXED, {"text": "done"}, {"text": APPROVE}])
    world.run_in_terminal().join(120)
    server = world.serve()
    run_id = server.get("/api/runs")[0]["id"]
    page, _ = open_page(browser, server, f"/runs/{run_id}")
    row = page.locator("#timeline li.gate_finished").first
    expect(row.locator(".head")).to_contain_text("failed gate")
    expect(row.locator(".head")).to_contain_text("(exit 1)")
    expect(row.locator("details")).to_have_attribute("open", "")
    first = row.locator(".first-failure")
    expect(first).to_have_text("FAIL: test_greet\n")
    expect(first).not_to_be_in_viewport()  # below the fold of the output box
    row.locator("button:has-text('jump to first failure')").click()
    expect(first).to_be_in_viewport()
    # The steps table says why the gate step failed, on a row under it.
    error = page.locator("#steps tr.step-error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("failed (exit 1)")
    gate_step = error.get_attribute("data-error-of")
    expect(page.locator(f"#steps tr[data-step='{gate_step}'] .status")).to_have_text("failed")


def test_the_agents_and_workflows_pages(world, browser):
    server = world.serve()
    page, console = open_page(browser, server, "/agents")
    agents = server.get("/api/agents")
    rows = page.locator("#agents tbody tr")
    expect(rows).to_have_count(len(agents))
    for n, agent in enumerate(agents):
        expect(rows.nth(n).locator("td").first).to_have_text(agent["agent"])
        expect(rows.nth(n).locator(".status")).to_have_text("yes" if agent["ready"] else "no")
        if not agent["ready"] and agent.get("fix"):
            expect(rows.nth(n)).to_contain_text(f"fix: {agent['fix']}")
    page.goto(server.base + "/workflows")
    expect(page.locator("#workflows tbody tr")).to_have_count(len(server.get("/api/workflows")))
    page.click("#workflows button:text-is('quick')")
    expect(page.locator("#wf-title")).to_have_text("Show: quick")
    expect(page.locator("#wf-show")).to_contain_text('"steps"')
    page.fill("#wf-text", "steps: nope\n")
    page.click("#wf-validate")
    expect(page.locator("#wf-result")).to_contain_text("invalid")
    page.fill("#wf-text", "description: mine\nsteps:\n  - {agent: claude, task: implement}\n")
    page.click("#wf-validate")
    expect(page.locator("#wf-result")).to_have_text("ok: workflow")
    assert console.errors == []


def test_agent_output_holding_html_renders_as_text(world, browser):
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    world.set_turns(
        [{"write_file": {"path": "x.html", "content": hostile}}, {"text": hostile}, {"text": APPROVE}]
    )
    assert world.run_in_terminal(task=f"task {hostile}").join(120).exit_code == 0
    server = world.serve()
    page, _ = open_page(browser, server)
    expect(page.locator("#runs tbody td.task")).to_have_text(f"task {hostile}")
    run_id = server.get("/api/runs")[0]["id"]
    page.goto(f"{server.base}/runs/{run_id}")
    message = page.locator("#timeline li.agent-message .text").first
    expect(message).to_have_text(hostile)
    expect(page.locator("#diff-files")).to_contain_text("window.__pwned = 1")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main b, #timeline script, #diff-files script").count() == 0


@pytest.mark.real
def test_the_readme_screenshot_from_the_demo(world, browser, tmp_path):
    """docs/dashboard.png (with ORCHESTRATOR_UPDATE_DOCS=1): `orchestrator demo --serve`, the real CLIs
    against the scripted model server."""
    from tests.doc_pictures import doc_picture

    from .conftest import Background

    argv = [
        sys.executable,
        "-m",
        "orchestrator",
        "demo",
        "--serve",
        "--port",
        "0",
        "--no-open",
        "--dir",
        str(tmp_path / "demo"),
    ]
    # The pinned CLIs are where `orchestrator install-clis` put them (the real cache folder).
    env = {**world.env, "ORCHESTRATOR_CLI_DIR": str(cli_cache_bin_dir(os.environ).parents[1])}
    demo = Background(argv, world.tmp, env)
    world.servers.append(demo)
    login = demo.wait_for("Dashboard: http://", 120).split("Dashboard: ", 1)[1].strip()
    from .conftest import Server

    server = Server(demo, login)
    run_id = server.wait_for_runs(1)[0]["id"]
    page = browser.new_page()
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.goto(login)
    page.goto(f"{server.base}/runs/{run_id}")
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=240_000)
    expect(page.locator("#diff-files .d2h-file-wrapper").first).to_be_visible(timeout=30_000)
    expect(page.locator("#findings li").first).to_contain_text("add() returns a - b")
    # What the picture shows of the timeline reads right (a commit row once showed "[object ...]").
    refine = page.locator("#timeline li.step_finished .body").filter(has_text="i1-s4-refine")
    expect(refine).to_have_text(re.compile(r"^■ i1-s4-refine succeeded commit [0-9a-f]{10} \(calc\.py\)$"))
    assert "[object" not in page.inner_text("#timeline")
    page.wait_for_timeout(500)
    out = doc_picture("dashboard.png", tmp_path)
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 20_000
    report = server.get(f"/api/runs/{run_id}")
    assert report["status"] == "approved" and json.dumps(report)
