// Shared by the queue page and the health view: elements built with textContent (never as HTML), the JSON
// API with a spinner and a timeout, times and amounts of time as staff read them.
"use strict";

const PW = (() => {
  // A request the server has not answered by then gets a message instead of waiting for ever.
  const TIMEOUT_MS = 12000;
  // The spinner shows only for a request slower than this (no flicker on fast answers).
  const SPINNER_DELAY_MS = 250;

  function el(tag, text, cls, attrs) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    return e;
  }

  function fmt(template, values) {
    return String(template).replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  }

  // An ISO time (or epoch seconds) in China time: "2026-11-03 10:00", or "11-03 10:00" when short.
  function chinaTime(when, short) {
    if (when === null || when === undefined || when === "") return "";
    const ms = typeof when === "number" ? when * 1000 : new Date(when).getTime();
    if (!Number.isFinite(ms)) return "";
    const text = new Date(ms + 8 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ");
    return short ? text.slice(5) : text;
  }

  function epoch(when) {
    if (typeof when === "number") return when;
    const ms = new Date(when).getTime();
    return Number.isFinite(ms) ? ms / 1000 : null;
  }

  // Hours as staff say them: 45 分钟, 30 小时, 3 天 6 小时 (as issue_queue/texts.py says them).
  function duration(hours, L) {
    const h = Math.abs(hours);
    if (h < 1) return fmt(L.minutes, { n: Math.max(1, Math.round(h * 60)) });
    if (h < 72) return fmt(L.hours, { n: h < 10 ? Math.round(h * 10) / 10 : Math.round(h) });
    const total = Math.round(h);
    const d = Math.floor(total / 24), rest = total % 24;
    return rest ? fmt(L.daysHours, { d, h: rest }) : fmt(L.days, { n: d });
  }

  class ApiError extends Error {
    constructor(message, status, body) { super(message); this.status = status; this.body = body || {}; }
  }

  // The status line: a message (kept until the next one), and a spinner while a request is on its way.
  class Status {
    constructor(node, L) {
      this.node = node; this.L = L;
      this.spinner = node.querySelector(".spinner");
      this.msg = node.querySelector(".msg");
      this.busyCount = 0; this.timer = null;
    }
    say(text, kind) {
      this.msg.textContent = text || "";
      this.node.className = "status" + (kind ? " " + kind : "");
    }
    busy(on) {
      this.busyCount += on ? 1 : -1;
      if (this.busyCount > 0 && this.timer === null && this.spinner.hidden) {
        this.timer = setTimeout(() => { this.timer = null; if (this.busyCount > 0) this.spinner.hidden = false; }, SPINNER_DELAY_MS);
      }
      if (this.busyCount <= 0) {
        this.busyCount = 0;
        if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
        this.spinner.hidden = true;
      }
      this.node.setAttribute("aria-busy", this.busyCount > 0 ? "true" : "false");
    }
  }

  // A JSON API call: the answer's body, or an ApiError whose message staff can read (the server's own
  // message in their language; a timeout or a broken connection named as such).
  async function request(path, options, status, L) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    if (status) status.busy(true);
    try {
      let resp;
      try {
        resp = await fetch(path, Object.assign({ credentials: "same-origin", signal: controller.signal }, options || {}));
      } catch (err) {
        if (controller.signal.aborted) throw new ApiError(fmt(L.timeout, { seconds: TIMEOUT_MS / 1000 }), 0, { code: "timeout" });
        throw new ApiError(L.network, 0, { code: "network" });
      }
      let body = {};
      try { body = await resp.json(); } catch (err) { body = {}; }
      if (!resp.ok) throw new ApiError(body.error || `HTTP ${resp.status}`, resp.status, body);
      return body;
    } catch (err) {
      if (err instanceof ApiError) throw err;
      if (controller.signal.aborted) throw new ApiError(fmt(L.timeout, { seconds: TIMEOUT_MS / 1000 }), 0, { code: "timeout" });
      throw new ApiError(L.network, 0, { code: "network" });
    } finally {
      clearTimeout(timer);
      if (status) status.busy(false);
    }
  }

  return { el, fmt, chinaTime, epoch, duration, ApiError, Status, request };
})();
