// The health view: a shop's logistics health (物流体验) from /shop-health, drawn with textContent only.
"use strict";

(() => {
  const { el, fmt, Status, request } = PW;
  const root = document.getElementById("health-app");
  const L = JSON.parse(root.dataset.labels);
  const lang = root.dataset.lang;
  const form = document.getElementById("health-filters");
  const out = document.getElementById("health");
  const status = new Status(document.getElementById("status"), Object.assign({}, L, {
    timeout: lang === "zh" ? "服务器没有响应（{seconds} 秒），请稍后重试" : "The server did not answer ({seconds} s)",
    network: lang === "zh" ? "网络连接失败，请检查网络后重试" : "The network failed; try again",
  }));
  const LATE = 0.2;

  const pct = (v) => (v === null || v === undefined ? L.none : `${(v * 100).toFixed(1)}%`);
  const hrs = (v) => (v === null || v === undefined ? L.none : fmt(L.hoursUnit, { n: v }));

  function tile(label, value) {
    const d = el("div", null, "tile");
    d.append(el("b", value), el("span", label));
    return d;
  }

  function table(heads, rows) {
    const t = el("table");
    const tr = el("tr");
    for (const [label, num] of heads) tr.appendChild(el("th", label, num ? "num" : null, { scope: "col" }));
    const thead = el("thead");
    thead.appendChild(tr);
    const tbody = el("tbody");
    for (const r of rows) tbody.appendChild(r);
    t.append(thead, tbody);
    return t;
  }

  function cells(tr, values, heads) {
    values.forEach((v, i) => tr.appendChild(el("td", v, heads[i][1] ? "num" : null, { "data-label": heads[i][0] })));
    return tr;
  }

  function draw(s) {
    const parts = [];
    const tiles = el("div", null, "tiles");
    tiles.append(tile(L.pickup24, pct(s.pickup.rate_24h)), tile(L.pickup48, pct(s.pickup.rate_48h)),
      tile(L.deliveryHours, hrs(s.delivery.hours)), tile(L.overShare, pct(s.delivery.over_share)),
      tile(L.exceptionRate, pct(s.exceptions.rate)));
    parts.push(tiles, el("p", fmt(L.settledNote, { to: s.settled_to }), "note"));
    if (!s.pickup.shipped && !s.delivery.signed) parts.push(el("p", L.noData));
    const ch = [[L.carrier, false], [L.shipped, true], [L.pickup24, true], [L.pickup48, true], [L.pickupHours, true],
      [L.exceptions, true], [L.exceptionRateCol, true]];
    parts.push(el("h2", L.carriers), table(ch, s.carriers.map((c) => cells(el("tr"), [c.carrier_label, c.shipped,
      pct(c.pickup_rate_24h), pct(c.pickup_rate_48h), hrs(c.pickup_hours), c.exceptions, pct(c.exception_rate)], ch))));
    const lh = [[L.lane, false], [L.signed, true], [L.hours, true], [L.normal, true], [L.normalNow, true], [L.over, true],
      [L.overShareCol, true]];
    parts.push(el("h2", L.lanes), table(lh, s.lanes.slice(0, 30).map((l) => {
      const tr = el("tr", null, l.over_share !== null && l.over_share > LATE ? "bad" : null);
      return cells(tr, [`${l.carrier_label} ${l.origin}→${l.destination}`, l.signed, hrs(l.hours), hrs(l.normal_hours),
        hrs(l.normal_hours_now), l.over, pct(l.over_share)], lh);
    })), el("p", L.laneNote, "note"));
    const kinds = Object.entries(s.issues || {});
    if (kinds.length) {
      parts.push(el("h2", L.issues));
      const ul = el("ul");
      for (const [k, n] of kinds) ul.appendChild(el("li", `${(s.issue_labels || {})[k] || k}: ${n}`));
      parts.push(ul);
    }
    const section = el("section", null, "health");
    section.append(...parts);
    out.replaceChildren(section);
  }

  async function load() {
    const p = new URLSearchParams(new FormData(form));
    p.set("lang", lang);
    try {
      draw(await request("/shop-health?" + p.toString(), {}, status, L));
      status.say("");
    } catch (err) {
      out.replaceChildren();
      status.say(err.message, "error");
    }
  }

  form.addEventListener("change", load);
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
})();
