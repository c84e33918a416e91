"use strict";

(async () => {
  const { el, api, connection, ApiError } = Orch;
  connection("live", "ready");
  const show = async (name) => {
    document.getElementById("wf-title").textContent = `Show: ${name}`;
    try {
      const loaded = await api("GET", `/api/workflows/${encodeURIComponent(name)}`);
      document.getElementById("wf-show").textContent = JSON.stringify(loaded.workflow, null, 2);
    } catch (err) {
      document.getElementById("wf-show").textContent = err instanceof ApiError ? err.describe() : String(err);
    }
  };
  const listing = await api("GET", "/api/workflows");
  document.querySelector("#workflows tbody").replaceChildren(
    ...listing.map((w) =>
      el(
        "tr",
        {},
        el("td", {}, el("button", { class: "link", text: w.name, onclick: () => show(w.name) })),
        el("td", { text: w.source + (w.shadowed ? " (replaced)" : "") }),
        el("td", { text: w.error ? `INVALID: ${w.error}` : w.summary }),
      ),
    ),
  );
  document.getElementById("wf-validate").addEventListener("click", async () => {
    const result = await api("POST", "/api/workflows/validate", { text: document.getElementById("wf-text").value });
    document.getElementById("wf-result").textContent = result.ok
      ? `ok: ${result.names.join(", ")}${result.notes.length ? `\nnotes:\n  ${result.notes.join("\n  ")}` : ""}`
      : `invalid ${result.error}`;
  });
})();
