// One run, live: the timeline from the event log (replayed from a cursor, then followed), steps with
// their diffs, the review's findings linked to their lines, cost against the budget, the gates, and the
// actions, each refused with the CLI's own message.
"use strict";

(() => {
  const { el, api, socket, money, tokens, statusBadge, showMessage, ApiError } = Orch;
  const runId = document.body.dataset.runId;
  const timeline = new Timeline.View(
    document.getElementById("timeline"),
    document.getElementById("timeline-earlier"),
    document.getElementById("timeline-latest"),
    async (before) => {
      const from = Math.max(0, before - Timeline.MAX_ROWS);
      const page = await api("GET", `/api/runs/${encodeURIComponent(runId)}/events?after=${from}&limit=${before - from}`);
      return page.events;
    },
  );
  const diffs = new DiffView.View(runId, document.getElementById("diff-files"), document.getElementById("diff-title"));
  const message = document.getElementById("action-message");
  const gap = document.getElementById("gap");
  const baseTitle = document.title;
  let cursor = 0; // the last seq this page holds: every event up to it, once, in order
  let liveSince = null; // the log's last seq when the page subscribed: events after it are news
  let summary = null;
  let refreshTimer = null;
  const stepsSeen = new Set(); // a step this page has events of: the first event of a new one (a group's member) refreshes the panels

  const say = (text, kind) => showMessage(message, text, kind);
  const fail = (err) => say(err instanceof ApiError ? `refused: ${err.describe()}` : String(err), "error");

  // --- the event log ---------------------------------------------------------------------------------

  function take(batch) {
    if (batch.after > cursor) {
      // Never skip silently: say so, fetch what is missing over HTTP, then go on.
      gap.hidden = false;
      gap.textContent = `missed events ${cursor + 1}–${batch.after}; fetching them`;
      return fillGap(batch.after).then(() => take(batch));
    }
    const fresh = batch.events.filter((e) => e.seq > cursor);
    for (let i = 0; i < fresh.length; i++) {
      if (fresh[i].seq !== cursor + 1 + i) {
        gap.hidden = false;
        gap.textContent = `gap in the log before event ${fresh[i].seq}`;
        break;
      }
    }
    if (!fresh.length) return Promise.resolve();
    cursor = fresh[fresh.length - 1].seq;
    timeline.append(fresh);
    if (liveSince === null) liveSince = batch.latest;
    const types = new Set(fresh.map((e) => e.event.type));
    let newStep = false;
    for (const e of fresh) {
      if (e.step_id && !stepsSeen.has(e.step_id)) {
        stepsSeen.add(e.step_id);
        newStep = true;
      }
    }
    if (newStep || ["step_started", "step_finished", "gate_finished", "run_finished", "run_started", "notice"].some((t) => types.has(t))) refreshSoon();
    // A new commit (a live one: the replayed ones are in the diff the page loaded) changes the whole
    // run's diff: show it if that is what the diff panel shows.
    if (fresh.some((e) => e.event.type === "step_finished" && e.event.commit && e.seq > liveSince) && diffs.step === null) diffSoon();
    const finished = fresh.find((e) => e.event.type === "run_finished" && e.seq > liveSince);
    if (finished) announce(finished.event);
    return Promise.resolve();
  }

  async function fillGap(upTo) {
    while (cursor < upTo) {
      const page = await api("GET", `/api/runs/${encodeURIComponent(runId)}/events?after=${cursor}&limit=5000`);
      const wanted = page.events.filter((e) => e.seq <= upTo);
      if (!wanted.length) break;
      await take({ after: cursor, events: wanted, latest: page.latest });
    }
    gap.textContent = `recovered missed events up to ${upTo}`;
  }

  // A run that ends while the page watches it: the title says so (a badge in the tab), and a browser
  // notification once the user allowed them (with "Notify me", here or on an earlier visit).
  const notifications = () => "Notification" in window && Notification.permission === "granted";
  function announce(ev) {
    document.title = `[${ev.status}] ${baseTitle}`;
    if (notifications()) {
      new Notification(`Run ${ev.status}`, { body: `${summary ? summary.task : runId} (${ev.stop_reason})` });
    }
  }

  // A long run opens on its tail (what is on screen); the subscription then goes on from there, and
  // earlier events are fetched only when asked for.
  async function follow() {
    const tail = await api("GET", `/api/runs/${encodeURIComponent(runId)}/events?tail=${Timeline.MAX_ROWS}`);
    liveSince = tail.latest;
    if (tail.events.length) {
      cursor = tail.events[0].seq - 1;
      timeline.setBase(cursor);
      await take({ after: cursor, events: tail.events, latest: tail.latest });
    }
    const io_ = socket(() => ({ [runId]: cursor }));
    io_.on("events", (batch, ack) => {
      if (batch.run_id !== runId) return ack && ack();
      take(batch).then(() => ack && ack(), () => ack && ack());
    });
    // Back after a lost connection: what the panels show may be older than the log (a refresh that
    // failed while the server went away): read them again.
    let connectedBefore = false;
    io_.on("connect", () => {
      if (connectedBefore) refreshSoon();
      connectedBefore = true;
    });
    io_.on("resync", (data) => {
      if (data.run_id === runId) io_.emit("subscribe", { run_id: runId, after: cursor }, () => {});
    });
    io_.on("runs", (data, ack) => {
      if (data.runs.some((r) => r.id === runId)) refreshSoon();
      if (ack) ack();
    });
  }

  // --- the side panels -------------------------------------------------------------------------------

  let diffTimer = null;
  function diffSoon() {
    clearTimeout(diffTimer);
    // Only if the panel still shows the whole run when the time comes (the user may have opened a step's).
    diffTimer = setTimeout(() => diffs.step === null && diffs.load(null).catch(() => {}), 400);
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 250);
  }

  async function refresh() {
    const base = `/api/runs/${encodeURIComponent(runId)}`;
    const [s, report, steps] = await Promise.all([api("GET", `${base}/summary`), api("GET", base), api("GET", `${base}/steps`)]);
    summary = s;
    renderHead(s, report);
    Groups.render(document.getElementById("groups"), report);
    renderSteps(report, steps);
    renderFindings(steps);
    renderCost(report, s);
    renderGates(report);
    renderCommands(s);
  }

  function renderHead(s, report) {
    document.getElementById("run-status").replaceChildren(statusBadge(s.status, s.stale));
    document.getElementById("run-task").textContent = s.task;
    const facts = [
      ["run", s.id],
      ["repository", s.repo],
      ["branch", s.branch],
      ["workflow", s.workflow_name],
      ["agents", (s.agents || []).join(", ")],
      ["iteration", String(s.iterations)],
      ["cost", money(s.cost_usd) + (s.budget_usd ? ` of ${money(s.budget_usd)}` : "")],
      ["duration", Orch.duration(s.duration_s)],
    ];
    if (report.stop_reason) facts.push(["stopped", report.stop_reason]);
    document.getElementById("run-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    const running = s.status === "running" && !s.stale;
    document.getElementById("act-cancel").hidden = !running;
    document.getElementById("act-resume").hidden = running || s.status === "approved";
  }

  function renderSteps(report, steps) {
    const body = document.querySelector("#steps tbody");
    const byId = new Map(steps.map((st) => [st.step_id, st]));
    body.replaceChildren(
      ...report.steps.flatMap((st) => {
        const used = st.usage;
        const record = byId.get(st.id);
        const error = record && record.error_message;
        const row = el(
          "tr",
          { dataset: { step: st.id }, class: error ? "has-error" : null },
          el("td", { text: st.id }),
          el("td", { text: st.agent }),
          el("td", {}, el("span", { class: `status s-${st.status === "succeeded" ? "approved" : st.status}`, text: st.status })),
          el("td", { class: "num", text: `${tokens(used.input_tokens)}/${tokens(used.output_tokens)}` }),
          el("td", { class: "num", text: money(used.cost_usd) }),
          el(
            "td",
            {},
            st.commit ? el("button", { class: "link", text: "diff", onclick: () => diffs.load(st.id).catch(fail) }) : "",
            st.commit ? el("button", { class: "link", text: "roll back here", onclick: () => rollback(st.id) }) : "",
          ),
        );
        // Why a step failed, on a row of its own under it: as wide as the table, at any width.
        return error ? [row, el("tr", { class: "step-error", dataset: { errorOf: st.id } }, el("td", { colspan: 6, class: "dim", text: error }))] : [row];
      }),
    );
  }

  function renderFindings(steps) {
    const list = document.getElementById("findings");
    const items = [];
    steps.forEach((st, index) => {
      for (const f of st.detail.findings || []) {
        // Addressed by the first later step whose commit changed the finding's file.
        const fixer = steps.slice(index + 1).find((later) => later.commit && (!f.file || later.files_changed.includes(f.file)));
        const where = f.file ? `${f.file}${f.line ? `:${f.line}` : ""}` : "";
        items.push(
          el(
            "li",
            { class: `finding sev-${f.severity}` },
            el("span", { class: "sev", text: f.severity }),
            " ",
            where ? el("button", { class: "link", text: where, onclick: () => diffs.showLine(f.file, f.line).catch(fail) }) : "",
            " ",
            el("span", { text: f.message }),
            el("div", { class: "dim", text: `from ${st.step_id} (${st.agent})${fixer ? `; addressed in ${fixer.step_id}` : ""}` }),
          ),
        );
      }
    });
    list.replaceChildren(...(items.length ? items : [el("li", { class: "dim", text: "no findings" })]));
  }

  function renderCost(report, s) {
    const byAgent = new Map();
    for (const st of report.steps) {
      const a = byAgent.get(st.agent) || { cost: null, input: 0, output: 0 };
      a.input += st.usage.input_tokens;
      a.output += st.usage.output_tokens;
      if (st.usage.cost_usd !== null) a.cost = (a.cost || 0) + st.usage.cost_usd;
      byAgent.set(st.agent, a);
    }
    const total = report.usage.cost_usd;
    const bar = s.budget_usd ? el("progress", { max: s.budget_usd, value: Math.min(total || 0, s.budget_usd) }) : null;
    document.getElementById("cost").replaceChildren(
      el("table", {}, ...[...byAgent].map(([agent, a]) => el("tr", {}, el("td", { text: agent }), el("td", { class: "num", text: `${tokens(a.input)}/${tokens(a.output)}` }), el("td", { class: "num", text: money(a.cost) })))),
      el("p", {}, `run: ${money(total)}`, s.budget_usd ? ` of ${money(s.budget_usd)} budget ` : "", bar),
    );
  }

  function renderGates(report) {
    document.getElementById("gates").replaceChildren(
      ...(report.gates.length
        ? report.gates.map((g) => el("li", {}, el("span", { class: `status s-${g.passed ? "approved" : "failed"}`, text: g.passed ? "passed" : "failed" }), " ", el("code", { text: g.command })))
        : [el("li", { class: "dim", text: "no gates ran" })]),
    );
  }

  function renderCommands(s) {
    document.getElementById("commands").replaceChildren(...Object.entries(s.commands).map(([what, cmd]) => el("li", {}, el("span", { class: "dim", text: `${what}: ` }), el("code", { text: cmd }))));
  }

  // --- actions ---------------------------------------------------------------------------------------

  async function act(path, body, done) {
    try {
      const result = await api("POST", `/api/runs/${encodeURIComponent(runId)}/${path}`, body || {});
      say(done(result));
      refreshSoon();
      return result;
    } catch (err) {
      fail(err);
      return null;
    }
  }

  async function rollback(step) {
    if (!window.confirm(`Move the run branch back to after ${step}? What is removed stays under a backup ref.`)) return;
    await act("rollback", { to: step }, (r) => `branch now at ${r.head.slice(0, 10)}; removed commits kept at ${r.backup_ref}`);
  }

  document.getElementById("act-cancel").addEventListener("click", () => act("cancel", {}, () => "cancel requested: the current step is being stopped"));
  document.getElementById("act-resume").addEventListener("click", () => act("resume", {}, () => "resumed"));
  document.getElementById("act-discard").addEventListener("click", () => {
    if (window.confirm("Remove the run's branch and worktree? Its commits stay under a backup ref.")) act("discard", {}, (r) => `discarded; commits kept at ${r.backup_ref}`);
  });
  const notifyButton = document.getElementById("act-notify");
  if (notifications()) notifyButton.textContent = "Notifications on";
  notifyButton.addEventListener("click", async () => {
    if (!("Notification" in window)) return say("this browser has no notifications; the tab's title will say when the run ends");
    if (Notification.permission !== "granted") await Notification.requestPermission();
    const notify = notifications();
    notifyButton.textContent = notify ? "Notifications on" : "Notify me";
    say(notify ? "you will be notified when the run ends" : "notifications are blocked for this page; the tab's title will say when the run ends");
  });

  const mergePanel = document.getElementById("merge-panel");
  const mergeGo = document.getElementById("merge-go");
  async function preview() {
    const into = document.getElementById("merge-into").value.trim();
    const target = document.getElementById("merge-preview");
    mergeGo.disabled = true;
    try {
      const p = await api("GET", `/api/runs/${encodeURIComponent(runId)}/merge-preview${into ? `?into=${encodeURIComponent(into)}` : ""}`);
      const lines = [
        `${p.run_branch} is ${p.ahead} ahead and ${p.behind} behind ${p.target_branch}`,
        p.up_to_date ? "nothing to merge" : p.fast_forward ? "fast-forward" : "a merge commit",
        p.conflicts.length ? `conflicts in: ${p.conflicts.join(", ")}` : "no conflicts",
        p.overwrites_uncommitted.length ? `would overwrite your uncommitted changes to: ${p.overwrites_uncommitted.join(", ")}` : "",
        p.files.length ? `files: ${p.files.join(", ")}` : "",
      ].filter(Boolean);
      target.replaceChildren(...lines.map((t) => el("p", { text: t })));
      mergeGo.disabled = !p.can_merge;
    } catch (err) {
      target.replaceChildren(el("p", { class: "error", text: err instanceof ApiError ? err.describe() : String(err) }));
    }
  }
  document.getElementById("act-merge").addEventListener("click", () => {
    mergePanel.hidden = !mergePanel.hidden;
    if (!mergePanel.hidden) preview();
  });
  document.getElementById("merge-refresh").addEventListener("click", preview);
  mergeGo.addEventListener("click", async () => {
    const into = document.getElementById("merge-into").value.trim() || null;
    const r = await act("merge", { into }, (m) => (m.up_to_date ? `${m.target_branch} already has everything` : `merged into ${m.target_branch} (${m.fast_forward ? "fast-forward" : "merge commit"}, ${m.files.length} files)`));
    if (r) preview();
  });

  document.getElementById("follow-up").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("follow-up-text");
    const text = input.value.trim();
    if (!text) return;
    const sent = await act("follow-up", { text }, (r) => (r.queued ? "follow-up queued: it runs when the current work ends" : "follow-up started"));
    if (sent) {
      // Shown only now that the server has it.
      timeline.note(`you: ${text} (${sent.queued ? "queued" : "started"})`, "follow-up-sent");
      input.value = "";
    }
  });

  for (const radio of document.querySelectorAll("input[name=diff-format]")) {
    radio.addEventListener("change", () => diffs.setFormat(radio.value));
  }
  document.getElementById("diff-run").addEventListener("click", () => diffs.load(null).catch(fail));

  follow().catch(fail);
  refresh().catch(fail);
  diffs.load(null).catch(() => {});
})();
