// What every page shares: building elements from untrusted text (always as text, never as HTML), the
// JSON API, the Socket.IO connection and its banner, and number formats.
"use strict";

const Orch = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  // Children nest in arrays at any depth (a row's parts, an optional group of parts): each array is
  // walked, never turned into text (String([" commit ", code]) is " commit ,[object HTMLElement]").
  function append(node, child) {
    if (child === null || child === undefined || child === false || child === "") return;
    if (Array.isArray(child)) {
      for (const part of child) append(node, part);
    } else {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  class ApiError extends Error {
    constructor(status, data) {
      super(data && data.error ? data.error : `HTTP ${status}`);
      this.status = status;
      this.data = data || {};
    }
    describe() {
      return this.data.hint ? `${this.message} (${this.data.hint})` : this.message;
    }
  }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  const banner = () => document.getElementById("connection");
  function connection(state, text) {
    const node = banner();
    if (!node) return;
    node.dataset.state = state;
    node.textContent = text;
  }

  // One Socket.IO connection per page. `cursors()` is read at every (re)connect and sent in `auth`, so
  // a reconnect resumes each run from the last event this page holds (the browser client would resend
  // a stale `query`).
  function socket(cursors) {
    const io_ = window.io({
      transports: ["websocket", "polling"],
      auth: (cb) => cb({ cursors: cursors ? cursors() : {} }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    io_.on("connect", () => connection("live", "live"));
    io_.on("disconnect", () => connection("reconnecting", "reconnecting… (missed events will be replayed)"));
    io_.on("connect_error", (err) =>
      connection("offline", `not connected (${err && err.message ? err.message : "server unreachable"}); retrying`),
    );
    return io_;
  }

  function money(usd) {
    if (usd === null || usd === undefined) return "–";
    return usd < 0.01 && usd > 0 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function tokens(n) {
    if (!n) return "0";
    return n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n);
  }

  function statusBadge(status, stale) {
    const text = stale ? "stale" : status.replace("_", " ");
    return el("span", { class: `status s-${stale ? "stale" : status}`, text, title: stale ? "its process is gone" : status });
  }

  function showMessage(node, text, kind) {
    node.hidden = !text;
    node.textContent = text || "";
    node.dataset.kind = kind || "info";
  }

  return { el, api, ApiError, connection, socket, money, duration, tokens, statusBadge, showMessage };
})();
