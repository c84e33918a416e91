// The run's timeline: every event of the log, in order, as rows. The DOM stays bounded: at most
// MAX_ROWS rows are in the page (a window onto the events, which are kept as data); while the view
// follows the end, new rows append and the oldest leave; "show earlier" moves the window back.
"use strict";

const Timeline = (() => {
  const { el, tokens } = Orch;
  const MAX_ROWS = 400;
  // Rows made per frame: a long catch-up (a page opening on a long run's tail, a reconnect after many
  // events) is drawn over a few frames, none of them a long task.
  const PER_FRAME = 100;
  // At most one DOM update per this many ms (about 30 a second): a steady stream repaints the list
  // half as often as at every frame, for a few ms more of latency.
  const MIN_UPDATE_MS = 33;
  const FAILURE = /(FAIL|Error|error:|Traceback|failed|AssertionError|✗)/;

  function gateRow(ev) {
    const lines = (ev.output_tail || "").split("\n");
    const first = lines.findIndex((line) => FAILURE.test(line));
    const pre = el("pre", { class: "gate-output" });
    lines.forEach((line, i) => pre.append(el("span", { class: i === first ? "first-failure" : null, text: line + "\n" })));
    const jump =
      !ev.passed && first >= 0
        ? el("button", {
            class: "link",
            text: "jump to first failure",
            onclick: () => pre.querySelector(".first-failure").scrollIntoView({ block: "center" }),
          })
        : null;
    return [
      el(
        "div",
        { class: "head" },
        el("span", { class: `status s-${ev.passed ? "approved" : "failed"}`, text: ev.passed ? "passed" : "failed" }),
        " gate ",
        el("code", { text: ev.command }),
        ev.exit_code !== null ? ` (exit ${ev.exit_code})` : "",
        " ",
        jump,
      ),
      ev.cause_text ? el("div", { class: "dim", text: ev.cause_text }) : null,
      el("details", { open: !ev.passed }, el("summary", { text: "output" }), pre),
    ];
  }

  // A gate once on the base, before any change; a `setup:` command: a line each, with why when it failed.
  function baseGateRow(ev) {
    const state = ev.passed === null ? "skipped" : ev.passed ? "passed" : "failed";
    const cls = ev.passed === null ? "skipped" : ev.passed ? "approved" : "failed";
    return [
      el("span", { class: `status s-${cls}`, text: state }),
      " gate on the base ",
      el("code", { text: ev.command }),
      ev.exit_code !== null ? ` (exit ${ev.exit_code})` : "",
      ev.cause_text ? el("div", { class: "dim", text: ev.cause_text }) : null,
      ev.failures && ev.failures.length ? el("div", { class: "dim", text: `failing there already: ${ev.failures.join(", ")}` }) : null,
    ];
  }

  function setupRow(ev) {
    const state = ev.ok === null ? "skipped" : ev.ok ? "done" : "failed";
    const cls = ev.ok === null ? "skipped" : ev.ok ? "approved" : "failed";
    return [
      el("span", { class: `status s-${cls}`, text: state }),
      ` setup (${ev.where}) `,
      el("code", { text: ev.command }),
      ev.exit_code !== null ? ` (exit ${ev.exit_code})` : "",
      ev.note ? el("span", { class: "dim", text: ` ${ev.note}` }) : null,
      !ev.ok && ev.output_tail ? el("details", {}, el("summary", { text: "output" }), el("pre", { class: "gate-output", text: ev.output_tail })) : null,
    ];
  }

  function agentRow(ev) {
    const inner = ev.event;
    switch (inner.type) {
      case "message":
        return [el("div", { class: "who", text: ev.agent }), el("div", { class: "text", text: inner.text })];
      case "tool_use": {
        const what = inner.command ? `$ ${inner.command}` : inner.path || "";
        const detail = inner.detail && inner.detail !== what ? inner.detail : "";
        return [
          el("span", { class: `tool t-${inner.status}`, text: `${inner.tool}` }),
          " ",
          what ? el("code", { text: what }) : null,
          " ",
          el("span", { class: "dim", text: inner.status }),
          detail ? el("div", { class: "dim tool-detail", text: detail }) : null,
        ];
      }
      case "session":
        return [el("span", { class: "dim", text: `${ev.agent} session ${inner.session_id || ""} ${inner.model || ""}` })];
      case "usage":
        return [el("span", { class: "dim", text: `${ev.agent}: ${tokens(inner.input_tokens)} in, ${tokens(inner.output_tokens)} out${inner.cost_usd !== null ? `, $${inner.cost_usd.toFixed(4)}` : ""}` })];
      case "error":
        return [el("span", { class: "status s-failed", text: inner.kind }), " ", el("span", { text: inner.message })];
      case "result":
        return [el("span", { class: "dim", text: `${ev.agent} ${inner.success ? "finished" : "failed"}` })];
      default:
        return [el("span", { class: "dim", text: inner.type })];
    }
  }

  function content(stored) {
    const ev = stored.event;
    switch (ev.type) {
      case "run_started":
        return [`run started: ${ev.workflow} on `, el("code", { text: ev.branch }), ` from ${ev.base}`];
      case "step_started":
        return [el("strong", { text: `▶ ${ev.step_id}` }), ev.agent === "gate" ? " gate" : ` ${ev.task} by ${ev.agent}`];
      case "step_finished": {
        const parts = [
          el("strong", { text: `■ ${ev.step_id}` }),
          " ",
          el("span", { class: `status s-${ev.status === "succeeded" ? "approved" : ev.status}`, text: ev.status }),
        ];
        if (ev.commit) parts.push(" commit ", el("code", { class: "commit", text: ev.commit.slice(0, 10), title: ev.commit }));
        if (ev.files_changed && ev.files_changed.length) parts.push(" (", el("span", { class: "files", text: ev.files_changed.join(", ") }), ")");
        if (ev.error) parts.push(" ", el("span", { class: "error", text: ev.error }));
        return parts;
      }
      case "gate_finished":
        return gateRow(ev);
      case "base_gate_finished":
        return baseGateRow(ev);
      case "setup_finished":
        return setupRow(ev);
      case "agent":
        return agentRow(ev);
      case "notice":
        return [el("span", { class: `notice n-${ev.level}`, text: ev.text })];
      case "follow_up":
        return [el("strong", { text: `follow-up from iteration ${ev.iteration}: ` }), el("span", { text: ev.text })];
      case "run_finished":
        return [el("strong", { text: "run finished: " }), el("span", { class: `status s-${ev.status}`, text: ev.status }), ` (${ev.stop_reason})`];
      default:
        return [ev.type];
    }
  }

  function kind(stored) {
    const ev = stored.event;
    return ev.type === "agent" ? `agent-${ev.event.type}` : ev.type;
  }

  class View {
    // `loadEarlier(beforeSeq)` fetches the events before the first one held (a long run's page starts
    // from its tail).
    constructor(list, earlier, latest, loadEarlier) {
      this.list = list;
      this.earlier = earlier;
      this.latest = latest;
      this.loadEarlier = loadEarlier;
      this.events = []; // the events held, contiguous: seq base+1, base+2, ...
      this.base = 0;
      this.start = 0; // index of the first event in the DOM
      this.end = 0; // one past the last
      this.following = true;
      this.pending = [];
      this.scheduled = false;
      this.flushedAt = -Infinity;
      earlier.addEventListener("click", () => this.back());
      latest.addEventListener("click", () => this.follow());
      // Only the user's own scrolling stops following: rows laid out late (fonts, wrapping) move
      // the end as well, and then the view sticks to it again.
      this.userAt = -Infinity;
      const intent = () => {
        this.userAt = performance.now();
      };
      for (const type of ["wheel", "touchmove", "keydown", "mousedown"]) list.addEventListener(type, intent, { passive: true });
      list.addEventListener("scroll", () => {
        const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        if (performance.now() - this.userAt < 1000) {
          this.following = atEnd;
          this.latest.hidden = atEnd;
          if (atEnd && this.end < this.events.length) this.follow();
        } else if (this.following && !atEnd) {
          list.scrollTop = list.scrollHeight;
        }
      });
      new ResizeObserver(() => {
        if (this.following) this.toEnd();
      }).observe(list);
    }

    // To the end, and again on the next frames while rows laid out late or a
    // resized window move it.
    toEnd() {
      this.list.scrollTop = this.list.scrollHeight;
      let frames = 3;
      const again = () => {
        if (!this.following || frames-- <= 0) return;
        if (this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight > 1) this.list.scrollTop = this.list.scrollHeight;
        requestAnimationFrame(again);
      };
      requestAnimationFrame(again);
    }

    setBase(base) {
      this.base = base;
    }

    row(stored) {
      return el("li", { class: `ev ${kind(stored)}`, dataset: { seq: stored.seq } }, el("span", { class: "seq", text: stored.seq }), el("div", { class: "body" }, content(stored)));
    }

    // Events are kept at once; the DOM is updated once per frame, however many batches came meanwhile.
    append(batch) {
      this.events.push(...batch);
      this.schedule();
    }

    schedule() {
      if (this.scheduled) return;
      this.scheduled = true;
      const wait = this.flushedAt + MIN_UPDATE_MS - performance.now();
      if (wait > 0) setTimeout(() => requestAnimationFrame(() => this.flush()), wait);
      else requestAnimationFrame(() => this.flush());
    }

    flush() {
      this.scheduled = false;
      this.flushedAt = performance.now();
      if (!this.following) {
        this.latest.hidden = false;
        this.latest.textContent = `↓ latest (${this.events.length - this.end} new)`;
        return;
      }
      if (this.events.length - this.end > MAX_ROWS) {
        // Further behind than the window holds: start the window afresh.
        this.list.replaceChildren();
        this.end = this.events.length - MAX_ROWS;
      }
      const upTo = Math.min(this.events.length, this.end + PER_FRAME);
      const fragment = document.createDocumentFragment();
      for (let i = this.end; i < upTo; i++) fragment.append(this.row(this.events[i]));
      this.list.append(fragment);
      this.end = upTo;
      if (this.end < this.events.length) this.schedule(); // the rest on the next frames
      let extra = this.list.childElementCount - MAX_ROWS;
      while (extra-- > 0) this.list.firstElementChild.remove();
      // The first event row (a local note, such as a follow-up sent, is no event of the log).
      const first = this.list.querySelector("li[data-seq]");
      this.start = first ? Number(first.dataset.seq) - this.base - 1 : this.end;
      this.earlier.hidden = this.start === 0 && this.base === 0;
      this.toEnd();
    }

    async back() {
      if (this.start === 0 && this.base > 0) {
        const older = await this.loadEarlier(this.base);
        if (older.length) {
          this.events.unshift(...older);
          this.base = older[0].seq - 1;
          this.start += older.length;
          this.end += older.length;
        }
      }
      this.showFrom(Math.max(0, this.start - MAX_ROWS / 2));
    }

    showFrom(start) {
      this.following = false;
      this.start = start;
      this.end = Math.min(this.events.length, start + MAX_ROWS);
      this.list.replaceChildren(...this.events.slice(this.start, this.end).map((s) => this.row(s)));
      this.earlier.hidden = this.start === 0 && this.base === 0;
      this.latest.hidden = false;
      this.list.scrollTop = 0;
    }

    follow() {
      this.following = true;
      this.start = Math.max(0, this.events.length - MAX_ROWS);
      this.end = this.events.length;
      this.list.replaceChildren(...this.events.slice(this.start).map((s) => this.row(s)));
      this.earlier.hidden = this.start === 0 && this.base === 0;
      this.latest.hidden = true;
      this.toEnd();
    }

    note(text, cls) {
      this.list.append(el("li", { class: `ev local ${cls || ""}` }, el("span", { class: "seq", text: "·" }), el("div", { class: "body", text })));
      if (this.following) this.toEnd();
    }
  }

  return { View, MAX_ROWS };
})();
