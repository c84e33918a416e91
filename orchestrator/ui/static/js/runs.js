// The runs page: every run in the store, whichever process started it, updated live.
"use strict";

(() => {
  const { el, api, socket, money, duration, statusBadge } = Orch;
  const body = document.querySelector("#runs tbody");
  const repoFilter = document.getElementById("filter-repo");
  const statusFilter = document.getElementById("filter-status");
  const runs = new Map();

  const short = (path) => path.split("/").slice(-2).join("/");

  function row(run) {
    return el(
      "tr",
      { dataset: { runId: run.id, status: run.status } },
      el("td", {}, statusBadge(run.status, run.stale)),
      el("td", {}, el("a", { href: `/runs/${encodeURIComponent(run.id)}`, text: run.id })),
      el("td", { class: "task", text: run.task, title: run.task }),
      el("td", { class: "opt", text: short(run.repo), title: run.repo }),
      el("td", { class: "opt", text: run.workflow_name }),
      el("td", { class: "opt", text: (run.agents || []).join(", ") }),
      el("td", { class: "num", text: run.iterations }),
      el("td", { class: "num", text: money(run.cost_usd) }),
      el("td", { class: "num opt", text: duration(run.duration_s) }),
    );
  }

  function visible(run) {
    return (!repoFilter.value || run.repo === repoFilter.value) && (!statusFilter.value || run.status === statusFilter.value);
  }

  function render() {
    const sorted = [...runs.values()].sort((a, b) => b.created_at - a.created_at);
    const shown = sorted.filter(visible);
    body.replaceChildren(...shown.map(row));
    document.getElementById("runs-empty").hidden = shown.length > 0;
    for (const run of sorted) {
      if (![...repoFilter.options].some((o) => o.value === run.repo)) {
        repoFilter.append(el("option", { value: run.repo, text: short(run.repo) }));
      }
    }
  }

  async function load() {
    for (const run of await api("GET", "/api/runs?limit=500")) runs.set(run.id, run);
    render();
  }

  repoFilter.addEventListener("change", render);
  statusFilter.addEventListener("change", render);
  const io_ = socket(null);
  io_.on("runs", (data, ack) => {
    for (const run of data.runs) runs.set(run.id, run);
    render();
    if (ack) ack(); // the next change may come
  });
  io_.on("connect", load); // also after a reconnect: whatever changed meanwhile
})();
