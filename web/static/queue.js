// The queue page: reads and changes issues through the JSON API with the signed-in (cookie) token.
// Every issue text goes into the page with textContent, never as HTML.
"use strict";

const root = document.getElementById("queue-app");
const L = JSON.parse(root.dataset.labels);
const lang = root.dataset.lang;
const form = document.getElementById("filters");
const tbody = document.getElementById("rows");
const statusLine = document.getElementById("status");
const countsList = document.getElementById("counts");
const nameInput = document.getElementById("my-name");
let selected = new Set();

nameInput.value = localStorage.getItem("pw_name") || "";
nameInput.addEventListener("change", () => localStorage.setItem("pw_name", nameInput.value.trim()));

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function query() {
  const params = new URLSearchParams(new FormData(form));
  for (const [k, v] of [...params.entries()]) if (!v) params.delete(k);
  params.set("lang", lang);
  return params;
}

function say(text, isError) {
  statusLine.textContent = text;
  statusLine.className = "status" + (isError ? " error" : "");
}

function chinaTime(iso) {
  if (!iso) return "";
  const d = new Date(new Date(iso).getTime() + 8 * 3600 * 1000);
  return d.toISOString().slice(0, 16).replace("T", " ");
}

async function api(path, options) {
  const resp = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401) { window.location.href = "/queue"; throw new Error("signed out"); }
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}

async function act(id, action, payload) {
  const by = nameInput.value.trim() || undefined;
  try {
    await api(`/issues/${encodeURIComponent(id)}/${action}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ by }, payload || {})),
    });
    say(L.done);
    await load();
  } catch (err) { say(err.message, true); }
}

function detailRow(issue) {
  const tr = el("tr", null, "detail");
  const td = el("td");
  td.colSpan = 9;
  td.appendChild(el("p", `${L.evidence}: ${issue.evidence || ""}`));
  td.appendChild(el("p", `${L.suggested}: ${issue.suggested_action || ""}`));
  const hist = el("ol");
  for (const h of issue.history || []) {
    hist.appendChild(el("li", `${chinaTime(h.at)} ${h.by} ${h.action}` +
      (h.resolution_code ? ` (${h.resolution_code})` : "") + (h.note ? ` — ${h.note}` : "")));
  }
  td.appendChild(el("h3", L.timeline));
  td.appendChild(hist);
  const resolve = el("form");
  resolve.className = "actions";
  const codeLabel = el("label", L.resolution + " ");
  const select = el("select");
  select.name = "resolution_code";
  for (const [code, label] of Object.entries(L.codes)) {
    const o = el("option", label); o.value = code; select.appendChild(o);
  }
  codeLabel.appendChild(select);
  const noteLabel = el("label", L.note + " ");
  const note = el("input"); note.name = "note"; note.maxLength = 1000;
  noteLabel.appendChild(note);
  const go = el("button", L.resolve, "primary"); go.type = "submit";
  resolve.append(codeLabel, noteLabel, go);
  resolve.addEventListener("submit", (e) => {
    e.preventDefault();
    act(issue.id, "resolve", { resolution_code: select.value, note: note.value || undefined });
  });
  td.appendChild(resolve);
  tr.appendChild(td);
  return tr;
}

function row(issue) {
  const tr = el("tr");
  tr.dataset.id = issue.id;
  const pick = el("td");
  const box = el("input"); box.type = "checkbox"; box.checked = selected.has(issue.id);
  box.setAttribute("aria-label", `${L.select} ${issue.order_id || issue.id}`);
  box.addEventListener("change", () => box.checked ? selected.add(issue.id) : selected.delete(issue.id));
  pick.appendChild(box);
  const sev = el("td"); sev.appendChild(el("span", issue.severity_label, "sev-" + issue.severity));
  const kind = el("td", issue.kind_label);
  const order = el("td", issue.order_id || "");
  const parcel = el("td", `${issue.carrier || ""} ${issue.tracking_number || ""}`);
  const lane = el("td", issue.lane || "");
  const why = el("td", null, "why");
  why.appendChild(el("div", issue.reason));
  why.appendChild(el("small", `${L.since} ${chinaTime(issue.opened_at)}`));
  const status = el("td", issue.status_label + (issue.assignee ? ` · ${issue.assignee}` : ""));
  const actions = el("td");
  const buttons = el("div", null, "actions");
  actions.appendChild(buttons);
  const more = el("button", L.details);
  more.setAttribute("aria-expanded", "false");
  more.addEventListener("click", () => {
    const next = tr.nextSibling;
    if (next && next.classList && next.classList.contains("detail")) {
      next.remove(); more.setAttribute("aria-expanded", "false");
    } else { tr.after(detailRow(issue)); more.setAttribute("aria-expanded", "true"); }
  });
  const ack = el("button", L.acknowledge);
  ack.disabled = issue.status !== "open";
  ack.addEventListener("click", () => act(issue.id, "acknowledge"));
  const mine = el("button", L.assignMe);
  mine.addEventListener("click", () => {
    const me = nameInput.value.trim();
    if (!me) { say(L.needName, true); nameInput.focus(); return; }
    act(issue.id, "assign", { assignee: me });
  });
  buttons.append(more, ack, mine);
  tr.append(pick, sev, kind, order, parcel, lane, why, status, actions);
  return tr;
}

async function load() {
  const params = query();
  document.getElementById("csv").href = "/issues.csv?" + params.toString();
  try {
    const body = await api("/issues?" + params.toString());
    tbody.replaceChildren(...body.issues.map(row));
    countsList.replaceChildren(...Object.entries(body.by_kind).map(([k, n]) => el("li", `${L.kinds[k] || k}: ${n}`)));
    if (!body.issues.length) {
      const tr = el("tr"); const td = el("td", L.empty); td.colSpan = 9; tr.appendChild(td); tbody.appendChild(tr);
    }
    say(`${L.total}: ${body.total}`);
  } catch (err) { say(err.message, true); }
}

form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
form.addEventListener("change", () => load());
document.getElementById("bulk-ack").addEventListener("click", async () => {
  if (!selected.size) { say(L.noneSelected, true); return; }
  try {
    await api("/bulk/acknowledge", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids: [...selected], by: nameInput.value.trim() || undefined }),
    });
    selected = new Set();
    await load();
  } catch (err) { say(err.message, true); }
});
load();
setInterval(() => { if (!document.querySelector("tr.detail")) load(); }, 15000);
