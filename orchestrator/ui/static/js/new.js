// The run wizard: repository (from the dashboard's allowed list), task, workflow, agents, budget; shows
// the equivalent `orchestrator run` command as it is filled in.
"use strict";

(async () => {
  const { el, api, connection, showMessage, ApiError } = Orch;
  connection("live", "ready");
  const form = document.getElementById("new-run");
  const repo = document.getElementById("new-repo");
  const workflow = document.getElementById("new-workflow");
  const message = document.getElementById("new-message");

  const quote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\"'\"'")}'`);
  function body() {
    const agents = ["implement", "review", "refine"]
      .map((task) => [task, form.elements[`agent-${task}`].value.trim()])
      .filter(([, agent]) => agent)
      .map(([task, agent]) => `${task}=${agent}`);
    const budget = form.elements.budget_usd.value;
    return {
      repo: repo.value,
      task: form.elements.task.value.trim(),
      workflow: workflow.value || null,
      agents,
      budget_usd: budget ? Number(budget) : null,
      include_uncommitted: form.elements.include_uncommitted.checked,
    };
  }
  function command() {
    const b = body();
    const parts = ["orchestrator", "run", quote(b.task || "TASK"), "--repo", quote(b.repo || "DIR")];
    if (b.workflow) parts.push("--workflow", quote(b.workflow));
    for (const a of b.agents) parts.push("--agent", quote(a));
    if (b.budget_usd !== null) parts.push("--budget-usd", String(b.budget_usd));
    if (b.include_uncommitted) parts.push("--include-uncommitted");
    document.getElementById("new-command").textContent = parts.join(" ");
  }

  const repos = await api("GET", "/api/repos");
  repo.replaceChildren(...repos.map((r) => el("option", { value: r, text: r })));
  if (!repos.length) showMessage(message, "This dashboard may not start runs: restart it with --repo DIR.", "error");
  const loadWorkflows = async () => {
    const listing = await api("GET", `/api/workflows?repo=${encodeURIComponent(repo.value)}`);
    workflow.replaceChildren(
      el("option", { value: "", text: "the default" }),
      ...listing.filter((w) => !w.error && !w.shadowed).map((w) => el("option", { value: w.name, text: `${w.name} (${w.source})` })),
    );
  };
  if (repos.length) await loadWorkflows();
  repo.addEventListener("change", loadWorkflows);
  form.addEventListener("input", command);
  command();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(message, "starting…");
    try {
      const started = await api("POST", "/api/runs", body());
      window.location.assign(`/runs/${encodeURIComponent(started.run_id)}`);
    } catch (err) {
      showMessage(message, err instanceof ApiError ? err.describe() : String(err), "error");
    }
  });
})();
