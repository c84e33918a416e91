"use strict";

(async () => {
  const { el, api, connection } = Orch;
  connection("live", "ready");
  const rows = await api("GET", "/api/agents");
  document.querySelector("#agents tbody").replaceChildren(
    ...rows.map((a) =>
      el(
        "tr",
        {},
        el("td", { text: a.agent }),
        el("td", {}, el("span", { class: `status s-${a.ready ? "approved" : "failed"}`, text: a.ready ? "yes" : "no" })),
        el("td", { text: (a.version || "–") + (a.version && !a.version_tested ? ` (tested: ${a.tested_version})` : "") }),
        el("td", { text: a.auth_source || "none" }),
        el("td", { text: a.ready ? a.path || "" : `${a.reason}${a.fix ? `; fix: ${a.fix}` : ""}` }),
      ),
    ),
  );
})();
