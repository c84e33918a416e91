// The run's groups from its report (the same `attempts`, `reviews` and `subtasks` as `runs show --json`):
// best-of-N attempts side by side, the reviewers' verdicts with the clustered findings, and the plan's
// subtask graph with each subtask's state. Redrawn on every refresh of the run page, so a group shows
// as it runs. Everything an agent wrote is set as text (Orch.el), never as HTML.
"use strict";

const Groups = (() => {
  const { el, money } = Orch;
  const stateClass = {
    chosen: "approved", merged: "approved", done: "succeeded", succeeded: "succeeded",
    running: "running", reviewing: "running", waiting: "skipped", pending: "skipped",
    "not chosen": "skipped", failed: "failed", conflict: "failed", not_started: "skipped",
  };
  const badge = (state) => el("span", { class: `status s-${stateClass[state] || "skipped"}`, text: state || "–" });
  const verdictText = { approve: "approve", request_changes: "request changes" };
  const cell = (text, cls) => el("td", { class: cls || null, text: text === null || text === undefined ? "–" : String(text) });

  function attemptsPanel(group) {
    const head = group.running ? "running" : `chosen: ${group.winner || "none"}`;
    const rows = group.attempts.map((a) =>
      el(
        "tr",
        { dataset: { attempt: a.name }, class: a.name === group.winner ? "winner" : null },
        el("td", {}, el("strong", { text: a.name })),
        cell(a.agent, "agent"),
        el("td", {}, badge(a.state)),
        cell(`${a.gates_passed || 0}/${a.gates_total || 0}`, "num gates"),
        el("td", { class: "review" }, a.reviewer ? `${a.reviewer}: ${a.state === "reviewing" ? "reviewing" : verdictText[a.review_verdict] || "no answer"}` : "–",
          a.review_score === null || a.review_score === undefined ? "" : el("span", { class: "dim", text: ` (${a.review_score > 0 ? "+" : ""}${a.review_score})` })),
        cell(a.diff_lines === null || a.diff_lines === undefined ? null : `${a.diff_lines} lines`, "num"),
        cell(money(a.cost_usd), "num cost"),
        el("td", {}, el("code", { class: "branch", text: a.branch || "–" }), a.error ? el("div", { class: "dim error-text", text: a.error }) : ""),
      ),
    );
    const why = String(group.explain || "").split("\n").slice(1);
    return el(
      "section",
      { class: "group attempts", dataset: { step: group.step } },
      el("h3", {}, `Attempts · ${group.step} · `, el("span", { class: "group-state", text: head }), group.select && group.select.length ? el("span", { class: "dim", text: ` (by ${group.select.join(", ")})` }) : ""),
      el("div", { class: "table-scroll" },
        el("table", { class: "attempts-table" },
          el("thead", {}, el("tr", {}, ...["Attempt", "Agent", "State", "Gates", "Review", "Diff", "Cost", "Branch"].map((t) => el("th", { text: t })))),
          el("tbody", {}, ...rows))),
      why.length ? el("ul", { class: "why" }, ...why.map((line) => el("li", { text: line }))) : "",
    );
  }

  function reviewsPanel(review) {
    const clusters = review.clusters || [];
    const counted = clusters.filter((c) => c.status === "counts").length;
    const state = review.running ? "running" : `${verdictText[review.verdict] || review.verdict || "no verdict"}; quorum ${review.quorum}: reached by ${counted} of ${clusters.length}`;
    return el(
      "section",
      { class: "group reviews", dataset: { step: review.step } },
      el("h3", {}, `Reviewers · ${review.step} · `, el("span", { class: "group-state", text: state })),
      el("ul", { class: "verdicts" }, ...(review.reviewers || []).map((r) =>
        el("li", { dataset: { reviewer: r.reviewer } }, el("strong", { text: r.reviewer }), " ",
          r.state === "running" ? badge("reviewing") : el("span", { class: `verdict v-${r.verdict || "none"}`, text: verdictText[r.verdict] || "no answer" })))),
      clusters.length
        ? el("ul", { class: "clusters" }, ...clusters.map((c) => {
            const f = c.finding || {};
            const where = f.file ? `${f.file}${f.line ? `:${f.line}` : ""} ` : "";
            const raised = c.reviewers || [];
            return el("li", { class: `finding sev-${c.severity} c-${c.status}` },
              el("span", { class: "sev", text: c.severity }), " ",
              el("span", { class: "cluster-status", text: c.status === "counts" ? "counted" : String(c.status).replace(/_/g, " ") }), " ",
              el("span", { class: "dim", text: `${raised.length} of ${(review.reviewers || []).length} reviewers (${raised.join(", ")})${c.confirmed_by ? `; second look by ${c.confirmed_by}` : ""}` }),
              el("div", { text: `${where}${f.message || ""}` }));
          }))
        : "",
    );
  }

  // Each subtask's wave: how many dependencies deep it is (the ones of a wave may run at once).
  function waves(subtasks) {
    const byId = new Map(subtasks.map((s) => [s.id, s]));
    const memo = new Map();
    const depth = (id, seen) => {
      if (memo.has(id)) return memo.get(id);
      if (seen.has(id) || !byId.has(id)) return 0;
      seen.add(id);
      const d = Math.max(0, ...(byId.get(id).depends_on || []).map((dep) => depth(dep, seen) + 1));
      memo.set(id, d);
      return d;
    };
    return new Map(subtasks.map((s) => [s.id, depth(s.id, new Set())]));
  }

  function subtasksPanel(graph) {
    const wave = waves(graph.subtasks);
    const merged = graph.subtasks.filter((s) => s.state === "merged").length;
    const order = graph.merge_order && graph.merge_order.length ? `; merged in order ${graph.merge_order.join(", ")}` : "";
    return el(
      "section",
      { class: "group subtasks", dataset: { step: graph.step } },
      el("h3", {}, `Subtasks · ${graph.step} · `, el("span", { class: "group-state", text: `${graph.running ? "running, " : ""}${merged} of ${graph.subtasks.length} merged${order}` })),
      el("div", { class: "table-scroll" },
        el("table", { class: "subtasks-table" },
          el("thead", {}, el("tr", {}, ...["Wave", "Subtask", "After", "Agent", "State", "Merge", "Branch"].map((t) => el("th", { text: t })))),
          el("tbody", {}, ...graph.subtasks.map((s) =>
            el("tr", { dataset: { subtask: s.id } },
              cell(wave.get(s.id) + 1, "num"),
              el("td", {}, el("strong", { text: s.id })),
              cell((s.depends_on || []).join(", ") || "–"),
              cell(s.agent),
              el("td", {}, badge(s.state)),
              el("td", {}, s.merge_commit ? el("code", { text: s.merge_commit.slice(0, 10), title: s.merge_commit }) : (s.conflicts && s.conflicts.length ? `conflicts: ${s.conflicts.join(", ")}` : "–")),
              el("td", {}, el("code", { class: "branch", text: s.branch || "–" }), s.error ? el("div", { class: "dim error-text", text: s.error }) : ""),
            ))))),
      (graph.serialized || []).length
        ? el("p", { class: "dim", text: `one at a time (same files): ${graph.serialized.map((p) => `${p.then} after ${p.first}`).join("; ")}` })
        : "",
    );
  }

  function render(node, report) {
    const parts = [
      ...(report.attempts || []).map(attemptsPanel),
      ...(report.reviews || []).map(reviewsPanel),
      ...(report.subtasks || []).map(subtasksPanel),
    ];
    node.hidden = parts.length === 0;
    node.replaceChildren(...parts);
  }

  return { render, waves };
})();
