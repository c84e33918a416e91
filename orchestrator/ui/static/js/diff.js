// Diffs per step (each editing step's commit) and for the whole run: split or unified, highlighted by
// diff2html, each file loaded on its own; generated, binary and very large files start collapsed.
"use strict";

const DiffView = (() => {
  const { el, api } = Orch;

  // diff2html (with highlight.js, about 1 MB) is loaded when the first diff is drawn, not with the page.
  let library = null;
  function diff2html() {
    if (window.Diff2HtmlUI) return Promise.resolve(window.Diff2HtmlUI);
    if (!library) {
      library = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = document.getElementById("diff2html-src").dataset.src;
        script.onload = () => resolve(window.Diff2HtmlUI);
        script.onerror = reject;
        document.head.append(script);
      });
    }
    return library;
  }

  class View {
    constructor(runId, list, title) {
      this.runId = runId;
      this.list = list;
      this.title = title;
      this.step = null;
      this.format = "line-by-line";
      this.files = new Map(); // path -> {item, body, loaded}
      this.chosen = new Map(); // path -> open, as the user left it (kept when the same diff reloads)
      this.loads = 0; // the latest load wins: an earlier one still under way draws nothing
    }

    url(file) {
      const params = new URLSearchParams();
      if (this.step) params.set("step", this.step);
      if (file) params.set("file", file);
      else params.set("stat", "1");
      return `/api/runs/${encodeURIComponent(this.runId)}/diff?${params}`;
    }

    async load(step) {
      if ((step || null) !== this.step) this.chosen.clear();
      this.step = step || null;
      const load = ++this.loads;
      this.title.textContent = this.step ? `of step ${this.step}` : "of the whole run";
      const data = await api("GET", this.url(null));
      if (load !== this.loads) return;
      this.files.clear();
      const stats = new Map(data.stats.map((s) => [s.path, s]));
      const items = data.files.map((path) => {
        const stat = stats.get(path) || { added: null, removed: null, collapsed: false, generated: false, binary: false };
        const body = el("div", { class: "file-diff" });
        const toggle = el("button", { class: "link", text: stat.collapsed ? "show" : "hide" });
        const item = el(
          "li",
          { class: "diff-file", dataset: { path } },
          el(
            "div",
            { class: "file-head" },
            el("code", { text: path }),
            " ",
            el("span", { class: "add", text: stat.added !== null ? `+${stat.added}` : "" }),
            " ",
            el("span", { class: "del", text: stat.removed !== null ? `−${stat.removed}` : "" }),
            stat.generated ? el("span", { class: "tag", text: "generated" }) : "",
            stat.binary ? el("span", { class: "tag", text: "binary" }) : "",
            " ",
            toggle,
          ),
          body,
        );
        const open = this.chosen.has(path) ? this.chosen.get(path) : !stat.collapsed;
        toggle.textContent = open ? "hide" : "show";
        const entry = { item, body, loaded: false, open };
        toggle.addEventListener("click", () => {
          entry.open = !entry.open;
          this.chosen.set(path, entry.open);
          toggle.textContent = entry.open ? "hide" : "show";
          body.hidden = !entry.open;
          if (entry.open) this.loadFile(path);
        });
        body.hidden = !open;
        this.files.set(path, entry);
        return item;
      });
      if (data.truncated) items.push(el("li", { class: "notice n-warning", text: "this diff was cut: see `orchestrator runs diff`" }));
      this.list.replaceChildren(...(items.length ? items : [el("li", { class: "dim", text: "no changes" })]));
      for (const [path, entry] of this.files) {
        if (load !== this.loads) return;
        if (entry.open) await this.loadFile(path);
      }
    }

    async loadFile(path) {
      const entry = this.files.get(path);
      if (!entry || entry.loaded) return entry;
      entry.loaded = true;
      const [data, Diff2HtmlUI] = await Promise.all([api("GET", this.url(path)), diff2html()]);
      if (this.files.get(path) !== entry) return entry; // the panel moved on meanwhile
      this.render(entry, data.diff, Diff2HtmlUI);
      return entry;
    }

    render(entry, text, Diff2HtmlUI) {
      entry.text = text;
      const ui = new (Diff2HtmlUI || window.Diff2HtmlUI)(entry.body, text, {
        drawFileList: false,
        outputFormat: this.format,
        matching: "lines",
        highlight: true,
        fileContentToggle: false,
        synchronisedScroll: true,
        colorScheme: "auto", // light or dark with the system, as the page
      });
      ui.draw();
      ui.highlightCode();
    }

    setFormat(format) {
      this.format = format;
      for (const entry of this.files.values()) if (entry.loaded && entry.text !== undefined) this.render(entry, entry.text);
    }

    // A finding's line: the whole run's diff, that file opened, the line's row marked.
    async showLine(path, line) {
      if (this.step !== null || !this.files.size) await this.load(null);
      const entry = this.files.get(path);
      if (!entry) return false;
      entry.open = true;
      this.chosen.set(path, true);
      entry.body.hidden = false;
      await this.loadFile(path);
      const numbers = [...entry.body.querySelectorAll(".line-num2, .d2h-code-side-linenumber")];
      const hit = numbers.find((n) => n.textContent.trim() === String(line));
      entry.item.scrollIntoView({ block: "start" });
      if (!hit) return false;
      const rowNode = hit.closest("tr");
      for (const old of this.list.querySelectorAll(".finding-line")) old.classList.remove("finding-line");
      rowNode.classList.add("finding-line");
      rowNode.scrollIntoView({ block: "center" });
      return true;
    }
  }

  return { View };
})();
