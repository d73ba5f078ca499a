// The queue page: reads and changes issues through the JSON API as the signed-in person. Every issue text
// goes into the page with textContent, never as HTML. Rules it keeps for staff:
// - every issue reachable (pages, totals), findable (search) and countable (counts that filter on click);
// - an action's message stays until the next action; the details panel and the focus stay where they were;
// - what staff chose or typed in a details panel stays through every redraw;
// - actions act only on what is shown, and are offered only where they can succeed;
// - a refresh never moves rows under the pointer: while staff work, it only says that the list changed;
// - a slow or failing server shows a spinner, then a message, and never leaves old rows as if current;
// - a session that expired signs in again in place, and the action (with its note) goes on.
"use strict";

(() => {
  const { el, fmt, chinaTime, epoch, duration, Status, request } = PW;
  const $ = (id) => document.getElementById(id);
  const root = $("queue-app");
  const L = JSON.parse(root.dataset.labels);
  const lang = root.dataset.lang;
  const canWrite = root.dataset.write === "1";
  const since = Number(root.dataset.since) || 0;
  const refreshMs = (Number(root.dataset.refresh) || 15) * 1000;
  let csrf = root.dataset.csrf;

  const filters = $("filters");
  const searchForm = $("search");
  const searchInput = $("q");
  const clearSearch = $("clear-search");
  const tbody = $("rows");
  const table = tbody.closest("table");
  const status = new Status($("status"), L);
  const notice = $("notice");
  const showUpdates = $("show-updates");
  const pageSize = $("page-size");
  const range = $("range");
  const prev = $("prev");
  const next = $("next");
  const columns = table.querySelectorAll("thead th").length;
  const OVERDUE = new Set(["ship_overdue", "pickup_overdue", "transit_overdue", "tracking_stale", "locker_uncollected"]);

  const state = {
    offset: 0, search: "", issues: [], total: 0, signature: "", seq: 0,
    open: new Set(), selected: new Set(), details: new Map(), pointerInTable: false,
  };

  // -- the request ----------------------------------------------------------------------------------------

  function params() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(filters).entries()) if (v) p.set(k, v);
    if (state.search) {
      p.set("q", state.search);
      p.delete("date");
      // A search looks through every status unless another than the default was chosen.
      if (p.get("status") === "open,acknowledged") p.delete("status");
    }
    p.set("lang", lang);
    if (since) p.set("since", String(since));
    return p;
  }

  function pageParams() {
    const p = params();
    p.set("offset", String(state.offset));
    p.set("limit", pageSize.value);
    return p;
  }

  async function post(path, payload) {
    return request(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(payload || {}),
    }, status, L);
  }

  // -- rows -----------------------------------------------------------------------------------------------

  function hoursSince(when) {
    const t = epoch(when);
    return t === null ? null : (Date.now() / 1000 - t) / 3600;
  }

  function timing(issue) {
    if (issue.status === "resolved" || issue.status === "auto_resolved") return L.closed;
    if (issue.kind === "autoconfirm_imminent") {
      const deadline = issue.autoconfirm_at || (issue.evidence_data || {}).deadline;
      const left = deadline ? -hoursSince(deadline) : null;
      if (left !== null) return left >= 0 ? fmt(L.leftConfirm, { d: duration(left, L) }) : fmt(L.pastConfirm, { d: duration(-left, L) });
    }
    const age = hoursSince(issue.opened_at);
    if (age === null) return "";
    return OVERDUE.has(issue.kind) ? fmt(L.overdue, { d: duration(age, L) }) : fmt(L.ago, { d: duration(age, L) });
  }

  function isActive(issue) { return issue.status === "open" || issue.status === "acknowledged"; }

  function copyButton(text, key) {
    const b = el("button", L.copy, "copy", { type: "button", "data-focus": key, "aria-label": `${L.copy} ${text}` });
    b.addEventListener("click", () => copy(text));
    return b;
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      // (No clipboard API outside a secure context: copy through a selected field instead.)
      const area = el("textarea", text, "offscreen");
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (!ok) { status.say(L.copyFailed, "error"); return; }
    }
    status.say(fmt(L.copied, { text }));
  }

  function cell(cls, label) {
    return el("td", null, "col-" + cls, { "data-label": label });
  }

  function heading(cls) {
    const th = table.querySelector(`thead th.col-${cls}`);
    return th ? th.textContent : "";
  }

  function row(issue) {
    const tr = el("tr", null, "issue sev-row-" + issue.severity);
    tr.dataset.id = issue.id;
    const id = issue.id;
    if (canWrite) {
      const pick = cell("select", heading("select"));
      const box = el("input", null, null, { type: "checkbox", "data-focus": `${id}:select`,
        "aria-label": `${L.select} ${issue.order_id || issue.tracking_number || id}` });
      box.checked = state.selected.has(id);
      box.addEventListener("change", () => (box.checked ? state.selected.add(id) : state.selected.delete(id)));
      pick.appendChild(box);
      tr.appendChild(pick);
    }
    const sev = cell("sev", heading("sev"));
    sev.appendChild(el("span", issue.severity_label, "sev sev-" + issue.severity));
    const what = cell("issue", heading("issue"));
    const kind = el("div", issue.kind_label, "kind");
    if (since && epoch(issue.opened_at) > since) kind.appendChild(el("span", L.new, "badge-new"));
    what.append(kind, el("small", timing(issue), "timing"));
    const where = cell("where", heading("where"));
    where.append(el("div", issue.shop), el("small", issue.platform_label));
    const parcel = cell("parcel", heading("parcel"));
    if (issue.order_id) {
      const line = el("div", null, "ref");
      line.append(el("span", issue.order_id, "mono"), copyButton(issue.order_id, `${id}:copy-order`));
      parcel.appendChild(line);
    }
    if (issue.tracking_number) {
      const line = el("div", null, "ref");
      line.append(el("span", issue.carrier_label + " "), el("span", issue.tracking_number, "mono"),
        copyButton(issue.tracking_number, `${id}:copy-parcel`));
      if (issue.tracking_url) {
        line.appendChild(el("a", L.track, "track", { href: issue.tracking_url, target: "_blank", rel: "noopener noreferrer",
          "data-focus": `${id}:track` }));
      }
      parcel.appendChild(line);
    }
    const to = cell("to", heading("to"));
    to.appendChild(el("div", issue.destination || ""));
    if (issue.order_value !== null && issue.order_value !== undefined) to.appendChild(el("small", fmt(L.orderValue, { v: issue.order_value })));
    if (issue.autoconfirm_at && isActive(issue)) to.appendChild(el("small", fmt(L.confirmBy, { t: chinaTime(issue.autoconfirm_at, true) }), "confirm-by"));
    const scan = cell("scan", heading("scan"));
    const newest = (issue.scans || [])[issue.scans ? issue.scans.length - 1 : 0];
    if (newest) {
      scan.append(el("small", chinaTime(newest.at, true)),
        el("div", newest.text || [newest.place, newest.exception_label || newest.status_label].filter(Boolean).join(" ")));
    }
    const why = cell("why", heading("why"));
    why.appendChild(el("div", issue.reason));
    const st = cell("status", heading("status"));
    st.appendChild(el("div", issue.status_label));
    if (issue.assignee) st.appendChild(el("small", fmt(L.assignee, { name: issue.assignee })));
    const actions = cell("actions", heading("actions"));
    const buttons = el("div", null, "actions");
    const more = el("button", state.open.has(id) ? L.hideDetails : L.details, null,
      { type: "button", "aria-expanded": state.open.has(id) ? "true" : "false", "aria-controls": `detail-${id}`, "data-focus": `${id}:details` });
    more.addEventListener("click", () => toggleDetails(issue, tr, more));
    buttons.appendChild(more);
    if (canWrite && isActive(issue)) {
      if (issue.status === "open") {
        const ack = el("button", L.acknowledge, null, { type: "button", "data-focus": `${id}:acknowledge` });
        ack.addEventListener("click", () => act(issue, "acknowledge", {}, `${id}:acknowledge`));
        buttons.appendChild(ack);
      }
      if (!issue.assignee) {
        const mine = el("button", L.assignMe, null, { type: "button", "data-focus": `${id}:assign` });
        mine.addEventListener("click", () => act(issue, "assign", {}, `${id}:assign`));
        buttons.appendChild(mine);
      }
    }
    actions.appendChild(buttons);
    tr.append(sev, what, where, parcel, to, scan, why, st, actions);
    return tr;
  }

  function detailRow(issue) {
    const full = state.details.get(issue.id) || issue;
    // Busy until its story arrives (fetchDetails): what was drawn may still be re-drawn.
    const tr = el("tr", null, "detail", { id: `detail-${issue.id}`, "aria-busy": "true" });
    tr.dataset.detailOf = issue.id;
    const td = el("td", null, null, { colspan: columns });
    const facts = el("dl", null, "facts");
    facts.append(el("dt", L.evidence), el("dd", full.evidence || ""), el("dt", L.suggested), el("dd", full.suggested_action || ""));
    td.appendChild(facts);
    td.appendChild(el("h3", L.scans));
    const scans = el("ol", null, "timeline");
    const all = (full.scans || []).slice().reverse();
    if (!all.length) scans.appendChild(el("li", L.noScans));
    for (const s of all) {
      const li = el("li", null, s.status === "exception" ? "scan exception" : "scan");
      li.append(el("time", chinaTime(s.at), null, { datetime: s.at }),
        el("span", [s.status_label, s.exception_label].filter(Boolean).join(" · "), "scan-status"),
        el("span", s.text || s.place || "", "scan-text"));
      scans.appendChild(li);
    }
    td.appendChild(scans);
    td.appendChild(el("h3", L.history));
    const hist = el("ol", null, "history");
    for (const h of full.history || []) {
      hist.appendChild(el("li", [chinaTime(h.at), h.actor, h.text].filter(Boolean).join(" ")));
    }
    td.appendChild(hist);
    if (canWrite && isActive(issue)) td.appendChild(resolveForm(issue));
    tr.appendChild(td);
    return tr;
  }

  function resolveForm(issue) {
    const form = el("form", null, "resolve actions");
    const codeLabel = el("label", L.resolution + " ");
    const select = el("select", null, null, { name: "resolution_code", "data-focus": `${issue.id}:code` });
    for (const [code, label] of Object.entries(L.codes)) select.appendChild(el("option", label, null, { value: code }));
    codeLabel.appendChild(select);
    const noteLabel = el("label", L.note + " ");
    const note = el("input", null, null, { name: "note", maxlength: 1000, "data-focus": `${issue.id}:note` });
    noteLabel.appendChild(note);
    const go = el("button", L.resolve, "primary", { type: "submit", "data-focus": `${issue.id}:resolve` });
    form.append(codeLabel, noteLabel, go);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      act(issue, "resolve", { resolution_code: select.value, note: note.value || undefined }, `${issue.id}:resolve`);
    });
    return form;
  }

  async function toggleDetails(issue, tr, button) {
    const open = tr.nextSibling && tr.nextSibling.dataset && tr.nextSibling.dataset.detailOf === issue.id;
    if (open) {
      tr.nextSibling.remove();
      state.open.delete(issue.id);
      button.setAttribute("aria-expanded", "false");
      button.textContent = L.details;
      return;
    }
    state.open.add(issue.id);
    button.setAttribute("aria-expanded", "true");
    button.textContent = L.hideDetails;
    tr.after(detailRow(issue));
    await fetchDetails(issue);
  }

  // The whole story (every scan kept, the full history) of an open details panel, re-drawn in place unless
  // the focus is in it (a caret would be lost).
  async function fetchDetails(issue) {
    let full = null;
    try {
      full = await request(`/issues/${encodeURIComponent(issue.id)}?lang=${lang}`, {}, null, L);
      state.details.set(issue.id, full);
    } catch (err) { /* the row's own facts stay shown */ }
    const panel = document.getElementById(`detail-${issue.id}`);
    if (!panel) return;
    if (!full || panel.contains(document.activeElement)) {
      panel.setAttribute("aria-busy", "false");
      return;
    }
    const entered = enteredValues(panel);
    const fresh = detailRow(issue);
    fillIn(fresh, entered);
    fresh.setAttribute("aria-busy", "false");
    panel.replaceWith(fresh);
  }

  // What staff have chosen and typed in the open panels' forms, by issue, so that no redraw takes it away.
  function enteredValues(root) {
    const values = new Map();
    for (const form of root.querySelectorAll("form.resolve")) {
      values.set(form.closest("tr").dataset.detailOf,
        { code: form.elements.resolution_code.value, note: form.elements.note.value });
    }
    return values;
  }

  function fillIn(root, values) {
    for (const form of root.querySelectorAll("form.resolve")) {
      const v = values.get(form.closest("tr").dataset.detailOf);
      if (!v) continue;
      form.elements.resolution_code.value = v.code;
      form.elements.note.value = v.note;
    }
  }

  // -- drawing --------------------------------------------------------------------------------------------

  function countList(node, counts, labels, filterName) {
    const current = filters.elements[filterName] ? filters.elements[filterName].value : "";
    const items = [];
    const keys = Object.keys(labels).filter((k) => counts[k] || k === current);
    for (const k of keys) {
      const b = el("button", `${labels[k] || k} ${counts[k] || 0}`, "count", { type: "button", "aria-pressed": k === current ? "true" : "false" });
      b.addEventListener("click", () => {
        filters.elements[filterName].value = k === current ? "" : k;
        changed(`count:${filterName}:${k}`);
      });
      const li = el("li");
      li.appendChild(b);
      items.push(li);
    }
    node.replaceChildren(...items);
  }

  function draw(body, focusKey) {
    const keep = focusKey || (document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : null);
    const rowIndex = keep ? state.issues.findIndex((i) => keep.startsWith(i.id + ":")) : -1;
    state.issues = body.issues;
    state.total = body.total;
    state.signature = signature(body);
    const visible = new Set(body.issues.map((i) => i.id));
    for (const id of [...state.selected]) if (!visible.has(id)) state.selected.delete(id);
    for (const id of [...state.open]) if (!visible.has(id)) state.open.delete(id);
    const trs = [];
    for (const issue of body.issues) {
      trs.push(row(issue));
      if (state.open.has(issue.id)) trs.push(detailRow(issue));
    }
    if (!body.issues.length) {
      const tr = el("tr", null, "empty");
      tr.appendChild(el("td", L.empty, null, { colspan: columns }));
      trs.push(tr);
    }
    const entered = enteredValues(tbody);
    tbody.replaceChildren(...trs);
    fillIn(tbody, entered);
    table.classList.remove("stale");
    notice.hidden = true;
    const kinds = L.kinds;
    countList($("kind-counts"), body.by_kind, kinds, "kind");
    countList($("severity-counts"), body.by_severity, L.severities, "severity");
    const shops = {};
    for (const s of Object.keys(body.by_shop)) shops[s] = s;
    if (Object.keys(shops).length > 1 || filters.elements.shop.value) countList($("shop-counts"), body.by_shop, shops, "shop");
    else $("shop-counts").replaceChildren();
    const from = body.total ? state.offset + 1 : 0;
    const to = state.offset + body.issues.length;
    range.textContent = state.search ? fmt(L.searchFor, { q: state.search, total: body.total })
      : body.total ? fmt(L.range, { from, to, total: body.total }) : L.none;
    prev.disabled = state.offset <= 0;
    next.disabled = to >= body.total;
    const newSince = $("new-since");
    newSince.hidden = !(since && body.new);
    newSince.textContent = since && body.new ? fmt(L.newSince, { n: body.new }) : "";
    $("csv").href = "/issues.csv?" + params().toString();
    for (const issue of body.issues) if (state.open.has(issue.id)) fetchDetails(issue);
    restoreFocus(keep, rowIndex);
  }

  function restoreFocus(key, rowIndex) {
    if (!key) return;
    let target = tbody.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (!target) {
      const [id] = key.split(":");
      target = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"] [data-focus$=":details"]`);
    }
    if (!target && rowIndex >= 0) {
      // The row left the list (resolved, or filtered out): the one now in its place.
      const rows = tbody.querySelectorAll("tr.issue");
      const r = rows[Math.min(rowIndex, rows.length - 1)];
      if (r) target = r.querySelector("[data-focus$=':details']");
    }
    (target || $("status")).focus();
  }

  function signature(body) {
    return body.total + "|" + body.issues.map((i) => `${i.id}:${i.status}:${i.updated_at}`).join(",");
  }

  function interacting() {
    return state.pointerInTable || table.contains(document.activeElement) || state.open.size > 0 || state.selected.size > 0
      || $("signin-dialog").open;
  }

  // -- loading --------------------------------------------------------------------------------------------

  async function load(opts) {
    const o = opts || {};
    const seq = ++state.seq;
    if (!o.quiet) table.classList.add("stale");
    try {
      const body = await request("/issues?" + pageParams().toString(), {}, o.quiet ? null : status, L);
      if (seq !== state.seq) return;
      if (o.quiet && interacting()) {
        if (signature(body) !== state.signature) { showUpdates.textContent = L.updates; notice.hidden = false; }
        return;
      }
      draw(body, o.focusKey);
      if (!o.keepMessage && !o.quiet) status.say("");
    } catch (err) {
      if (seq !== state.seq) return;
      if (err.status === 401 && !o.quiet) { signIn(() => load(o)); return; }
      if (o.quiet) { status.say(err.message, "error"); return; }
      // Nothing old may stand under the new filter as if it answered it.
      state.issues = [];
      const tr = el("tr", null, "empty");
      tr.appendChild(el("td", err.message, "error", { colspan: columns }));
      tbody.replaceChildren(tr);
      table.classList.remove("stale");
      range.textContent = "";
      status.say(err.message, "error");
    }
  }

  function changed() {
    state.offset = 0;
    state.selected.clear();
    state.open.clear();
    load();
  }

  // -- actions --------------------------------------------------------------------------------------------

  async function act(issue, action, payload, focusKey) {
    try {
      await post(`/issues/${encodeURIComponent(issue.id)}/${action}?lang=${lang}`, payload);
      status.say(L["done_" + action]);
      state.details.delete(issue.id);
      await load({ keepMessage: true, focusKey });
    } catch (err) {
      if (err.status === 401) { signIn(() => act(issue, action, payload, focusKey)); return; }
      status.say(err.message, "error");
      if (err.status === 409 || err.status === 404) await load({ keepMessage: true, focusKey });
    }
  }

  async function bulkAcknowledge() {
    const visible = new Set(state.issues.map((i) => i.id));
    const ids = [...state.selected].filter((id) => visible.has(id));
    if (!ids.length) { status.say(L.noneSelected, "error"); return; }
    try {
      const body = await post(`/bulk/acknowledge?lang=${lang}`, { ids });
      const c = body.counts || {};
      const parts = [];
      if (c.acknowledged) parts.push(fmt(L.bulkDone, { n: c.acknowledged }));
      if (c.not_found) parts.push(fmt(L.bulkGone, { n: c.not_found }));
      if (c.conflict) parts.push(fmt(L.bulkConflict, { n: c.conflict }));
      for (const [id, outcome] of Object.entries(body.results || {})) if (outcome === "acknowledged") state.selected.delete(id);
      status.say(parts.join(lang === "zh" ? "；" : "; "), c.not_found || c.conflict ? "warning" : "");
      await load({ keepMessage: true, focusKey: "bulk" });
      $("bulk-ack").focus();
    } catch (err) {
      if (err.status === 401) { signIn(bulkAcknowledge); return; }
      status.say(err.message, "error");
    }
  }

  // -- signing in again in place --------------------------------------------------------------------------

  let retry = null;
  const dialog = $("signin-dialog");
  const signinForm = $("signin-form");
  $("signin-title").textContent = L.signinTitle;
  $("signin-go").textContent = L.signinGo;
  $("signin-cancel").textContent = L.cancel;

  function signIn(then) {
    retry = then;
    $("signin-error").hidden = true;
    if (!dialog.open) dialog.showModal();
    signinForm.elements.login.focus();
  }

  signinForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const token = await request(`/queue/signin?lang=${lang}`, {}, null, L);
      const body = await request(`/queue/signin?lang=${lang}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ login: signinForm.elements.login.value, password: signinForm.elements.password.value, csrf: token.csrf }),
      }, null, L);
      csrf = body.csrf;
      signinForm.elements.password.value = "";
      dialog.close();
      const then = retry;
      retry = null;
      if (then) await then();
    } catch (err) {
      const msg = $("signin-error");
      msg.textContent = err.message;
      msg.hidden = false;
    }
  });
  $("signin-cancel").addEventListener("click", () => { retry = null; dialog.close(); });

  // -- wiring ---------------------------------------------------------------------------------------------

  filters.addEventListener("submit", (e) => { e.preventDefault(); changed(); });
  filters.addEventListener("change", () => changed());
  pageSize.addEventListener("change", () => changed());
  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    state.search = searchInput.value.trim();
    clearSearch.hidden = !state.search;
    changed();
  });
  clearSearch.addEventListener("click", () => {
    searchInput.value = "";
    state.search = "";
    clearSearch.hidden = true;
    changed();
    searchInput.focus();
  });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - Number(pageSize.value)); load({ focusKey: null }).then(() => prev.disabled ? next.focus() : prev.focus()); });
  next.addEventListener("click", () => { state.offset += Number(pageSize.value); load({ focusKey: null }).then(() => next.disabled ? prev.focus() : next.focus()); });
  showUpdates.addEventListener("click", () => load({ keepMessage: true, focusKey: null }));
  if ($("bulk-ack")) $("bulk-ack").addEventListener("click", bulkAcknowledge);
  table.addEventListener("pointerenter", () => { state.pointerInTable = true; });
  table.addEventListener("pointerleave", () => { state.pointerInTable = false; });
  if (window.matchMedia("(max-width: 700px)").matches) filters.closest("details").open = false;

  // A link from an alert (alerting/render.py): /queue?issue=<id> opens that issue; /queue?shop=&kind=&carrier=
  // &severity=&status= opens the queue filtered so.
  async function fromLink() {
    const q = new URLSearchParams(window.location.search);
    for (const [name, value] of q.entries()) {
      const field = filters.elements.namedItem(name);
      if (!field || !("value" in field)) continue;
      if (field.tagName !== "SELECT" || [...field.options].some((o) => o.value === value)) field.value = value;
    }
    const id = q.get("issue");
    if (!id) return;
    try {
      const issue = await request(`/issues/${encodeURIComponent(id)}?lang=${lang}`, {}, null, L);
      state.search = issue.tracking_number || issue.order_id || "";
      searchInput.value = state.search;
      clearSearch.hidden = !state.search;
      state.open.add(issue.id);
      state.details.set(issue.id, issue);
    } catch (err) {
      status.say(err.message, "error");
    }
  }

  fromLink().then(() => load());
  setInterval(() => { if (!document.hidden) load({ quiet: true }); }, refreshMs);
})();
