// The usage dashboard: tiles, allowed vs denied over time, top keys, a key
// view with tier changes, nodes and config. Refreshes every 2 s.

import uPlot from "uplot";
import * as api from "./api";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const REFRESH_MS = 2000;
const fmt = new Intl.NumberFormat("en");

let chart: uPlot | null = null;
/** Penalties in force from recent alerts: "subject=id" to lapse time. */
let penalties = new Map<string, number>();
let policies: api.ConfigView["config"]["policies"] = {};
const lastDecisions = new Map<string, { at: number; count: number }>();

function cell(row: HTMLTableRowElement, text: string, className = ""): void {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
}

function fillTable(id: string, rows: string[][], onPick?: (index: number) => void): void {
  const body = $<HTMLTableElement>(id).tBodies[0];
  body.replaceChildren();
  rows.forEach((values, index) => {
    const row = body.insertRow();
    values.forEach((v) => cell(row, v));
    if (onPick) {
      row.className = "pick";
      row.addEventListener("click", () => onPick(index));
    }
  });
}

function keyText(key: api.KeyAttrs): string {
  return Object.entries(key).map(([k, v]) => `${k}=${v}`).join(" ");
}

function query(): URLSearchParams {
  const q = new URLSearchParams({ range: $<HTMLSelectElement>("range").value });
  const policy = $<HTMLSelectElement>("policy").value;
  const tier = $<HTMLSelectElement>("tier").value;
  if (policy) q.set("policy", policy);
  if (tier) q.set("tier", tier);
  return q;
}

function drawChart(report: api.UsageReport): void {
  const xs = report.allowed.map((_, i) => report.start + i * report.step_s);
  const data: uPlot.AlignedData = [xs, report.allowed, report.denied];
  const box = $("chart");
  if (!chart) {
    chart = new uPlot({
      width: box.clientWidth || 900, height: 220,
      series: [{}, { label: "allowed", stroke: "#2e7d32", width: 1.5 }, { label: "denied", stroke: "#c62828", width: 1.5 }],
      axes: [{}, { label: `checks per step` }],
    }, data, box);
  } else {
    chart.setData(data);
  }
}

function renderUsage(report: api.UsageReport): void {
  const t = report.totals;
  const recent = report.step_s === 1 ? 10 : 1;
  const tail = (xs: number[]) => xs.slice(-recent - 1, -1).reduce((a, b) => a + b, 0);
  const rate = (tail(report.allowed) + tail(report.denied)) / (recent * report.step_s);
  $("tile-rate").textContent = fmt.format(Math.round(rate));
  $("tile-allowed").textContent = fmt.format(t.allowed);
  $("tile-denied").textContent = fmt.format(t.denied);
  const checks = t.allowed + t.denied;
  $("tile-ratio").textContent = checks ? `${((100 * t.denied) / checks).toFixed(1)}%` : "–";
  const missing = $("missing");
  missing.hidden = report.missing.length === 0;
  missing.textContent = `Missing from these numbers: ${report.missing.map((m) => `${m.node} (${m.error})`).join(", ")}`;
  drawChart(report);
  fillTable("scopes", report.scopes.map((s) => [
    s.policy ?? `inline ${s.namespace}`, s.tier ?? "", fmt.format(s.counts.allowed), fmt.format(s.counts.denied), fmt.format(s.counts.allowed_cost),
  ]));
  const topRows = (list: api.TopEntry[]) => list.map((e) => [
    keyText(e.key), e.policy ?? e.namespace ?? "", e.tier ?? "", e.error ? `${fmt.format(e.count)} ±${fmt.format(e.error)}` : fmt.format(e.count), String(e.nodes),
  ]);
  fillTable("top-denied", topRows(report.top_denied), (i) => pickKey(report.top_denied[i]));
  fillTable("top-allowed", topRows(report.top_allowed), (i) => pickKey(report.top_allowed[i]));
  badgePenalized("top-denied", report.top_denied);
  badgePenalized("top-allowed", report.top_allowed);
}

/** Marks rows whose key is under a penalty an alert applied. */
function badgePenalized(id: string, list: api.TopEntry[]): void {
  const rows = $<HTMLTableElement>(id).tBodies[0].rows;
  list.forEach((entry, i) => {
    const until = Object.entries(entry.key)
      .map(([attr, value]) => penalties.get(`${attr}=${value}`))
      .find((u) => u !== undefined && u > Date.now());
    if (until === undefined) return;
    const badge = document.createElement("span");
    badge.className = "badge penalty";
    badge.textContent = `penalty until ${new Date(until).toLocaleTimeString()}`;
    rows[i].cells[0].append(badge);
  });
}

function renderAlerts(answer: api.AlertsAnswer): void {
  penalties = new Map();
  for (const a of answer.alerts) {
    if (a.penalty) penalties.set(`${a.penalty.subject}=${a.penalty.id}`, Math.max(a.penalty.until_ms, penalties.get(`${a.penalty.subject}=${a.penalty.id}`) ?? 0));
  }
  const ratio = (a: api.AlertRecord) => a.when === "denied_ratio";
  fillTable("alerts", answer.alerts.map((a) => [
    new Date(a.fired_at_ms).toLocaleTimeString(), a.rule, a.severity, ratio(a) ? "(whole policy)" : keyText(a.key),
    `${a.policy ?? a.namespace ?? "*"}${a.tier ? ` / ${a.tier}` : ""}`,
    ratio(a) ? `${(100 * a.count).toFixed(1)}% / ${(100 * a.threshold).toFixed(0)}% denied` : `${fmt.format(a.count)} / ${fmt.format(a.threshold)} ${a.when} in ${a.window_s} s`,
    a.node, a.penalty ? `${a.penalty.tier} until ${new Date(a.penalty.until_ms).toLocaleTimeString()}` : "",
  ]));
  const rows = $<HTMLTableElement>("alerts").tBodies[0].rows;
  answer.alerts.forEach((a, i) => { rows[i].cells[2].className = `sev-${a.severity}`; });
}

function renderCluster(status: api.ClusterStatus): void {
  $("tile-nodes").textContent = status.mode === "cluster" ? `${status.live} / ${status.expected}` : "1";
  $("node").textContent = status.node_id ? `node ${status.node_id}` : "standalone";
  const now = Date.now();
  fillTable("nodes", status.members.map((m) => {
    // Per incarnation: a restarted node counts from zero again, and its
    // earlier incarnation may still be listed beside it.
    const series = `${m.node_id}/${m.generation}`;
    const before = lastDecisions.get(series);
    let rate = "";
    if (m.decisions !== null) {
      if (before && now > before.at && m.decisions >= before.count) {
        rate = fmt.format(Math.round(((m.decisions - before.count) * 1000) / (now - before.at)));
      }
      lastDecisions.set(series, { at: now, count: m.decisions });
    }
    const sync = m.self ? "self" : m.last_sync_ms_ago === null ? "never" : `${m.last_sync_ms_ago} ms ago`;
    return [m.node_id, m.live ? "live" : "down", sync, m.lag_ms === null ? "" : `${m.lag_ms.toFixed(1)} ms`, rate];
  }));
}

function renderConfig(view: api.ConfigView): void {
  policies = view.config.policies ?? {};
  $("config-version").textContent = `version ${view.version}`;
  const box = $("config");
  box.replaceChildren();
  const table = document.createElement("table");
  table.createTHead().insertRow().append(...["policy", "key", "tier", "limits"].map((h) => Object.assign(document.createElement("th"), { textContent: h })));
  const body = table.createTBody();
  for (const [name, p] of Object.entries(policies)) {
    for (const [tier, t] of Object.entries(p.tiers)) {
      const row = body.insertRow();
      const limits = t.unlimited ? "unlimited" : (t.limits ?? []).map((l) => `${l.name ?? l.rate}: ${l.algorithm} ${l.rate}${l.burst ? ` burst ${l.burst}` : ""}`).join("; ");
      [name, p.key.join("+"), tier + (tier === p.default_tier ? " (default)" : ""), limits].forEach((v) => cell(row, v));
    }
  }
  box.append(table);
  syncSelect("policy", Object.keys(policies), true);
  syncSelect("key-policy", Object.keys(policies), false);
  const tiers = [...new Set(Object.values(policies).flatMap((p) => Object.keys(p.tiers)))];
  syncSelect("tier", tiers, true);
  syncSelect("assign-tier", tiers, false);
}

function syncSelect(id: string, values: string[], withAll: boolean): void {
  const select = $<HTMLSelectElement>(id);
  const wanted = (withAll ? [""] : []).concat(values);
  const have = [...select.options].map((o) => o.value);
  if (have.join("\n") === wanted.join("\n")) return;
  const current = select.value;
  select.replaceChildren(...wanted.map((v) => new Option(v || "all", v)));
  if (wanted.includes(current)) select.value = current;
}

function pickKey(entry: api.TopEntry): void {
  if (!entry.policy) return;
  $<HTMLSelectElement>("key-policy").value = entry.policy;
  for (const attr of ["user", "ip", "token", "endpoint"] as const) {
    $<HTMLInputElement>(`key-${attr}`).value = entry.key[attr] ?? "";
  }
  // API tokens are listed redacted (a prefix and a hash): the full token
  // must be typed in to look the key up.
  if (entry.key.token?.includes("\u2026")) {
    const input = $<HTMLInputElement>("key-token");
    input.value = "";
    input.placeholder = `full token for ${entry.key.token}`;
    input.focus();
    return;
  }
  void lookUpKey();
}

async function lookUpKey(): Promise<void> {
  const q = new URLSearchParams({ policy: $<HTMLSelectElement>("key-policy").value });
  for (const attr of ["user", "ip", "token", "endpoint"]) {
    const value = $<HTMLInputElement>(`key-${attr}`).value.trim();
    if (value) q.set(attr, value);
  }
  const box = $("key-result");
  try {
    const view = await api.keyView(q);
    box.replaceChildren();
    const head = document.createElement("p");
    head.id = "key-tier";
    const a = view.assignment;
    const until = a?.until_ms ? `, until ${new Date(a.until_ms).toLocaleTimeString()}` : "";
    const from = a ? `assignment to ${a.subject} ${a.id}${until}` : (view.tier_source ?? "inline");
    head.textContent = `tier ${view.decision.tier ?? "–"} (from ${from})`;
    const table = document.createElement("table");
    table.id = "key-limits";
    table.createTHead().insertRow().append(...["limit", "algorithm", "capacity", "remaining", "full again in"].map((h) => Object.assign(document.createElement("th"), { textContent: h })));
    const body = table.createTBody();
    for (const l of view.decision.limits) {
      const row = body.insertRow();
      [l.name, l.algorithm, fmt.format(l.limit), fmt.format(l.remaining), `${(l.reset_after_ms / 1000).toFixed(1)} s`].forEach((v) => cell(row, v));
      row.cells[3].className = l.remaining > 0 ? "ok" : "no";
    }
    if (view.decision.limits.length === 0) body.insertRow().insertCell().textContent = "unlimited";
    const recent = document.createElement("p");
    recent.id = "key-recent";
    const est = (e: api.Estimate | null) => (e ? fmt.format(e.count) : "not in top keys");
    recent.textContent = Object.entries(view.recent).map(([range, r]) => `${range}: allowed ${est(r.allowed)}, denied ${est(r.denied)}`).join(" · ");
    box.append(head, table, recent);
    const assign = $<HTMLFormElement>("assign-form");
    assign.hidden = false;
    const subject = $<HTMLSelectElement>("assign-subject");
    const present = ["token", "user", "ip", "endpoint"].find((attr) => $<HTMLInputElement>(`key-${attr}`).value.trim());
    subject.value = present ?? "user";
  } catch (e) {
    box.textContent = e instanceof Error ? e.message : String(e);
  }
}

async function assign(): Promise<void> {
  const subject = $<HTMLSelectElement>("assign-subject").value;
  const id = $<HTMLInputElement>(`key-${subject}`).value.trim();
  const tier = $<HTMLSelectElement>("assign-tier").value;
  const status = $("assign-status");
  if (!id) {
    status.textContent = `enter the key's ${subject} first`;
    return;
  }
  try {
    const lasting = $<HTMLSelectElement>("assign-for").value;
    await api.assignTier(subject, id, tier, lasting);
    status.textContent = `${subject} ${id} is now ${tier}${lasting ? ` for ${lasting}` : ""}`;
    await lookUpKey();
  } catch (e) {
    status.textContent = e instanceof Error ? e.message : String(e);
  }
}

async function refresh(): Promise<void> {
  const status = $("status");
  const results = await Promise.allSettled([api.usage(query()), api.cluster(), api.config(), api.alerts()]);
  const [usage, cluster, config, alerts] = results;
  if (config.status === "fulfilled") renderConfig(config.value);
  if (cluster.status === "fulfilled") renderCluster(cluster.value);
  if (alerts.status === "fulfilled") renderAlerts(alerts.value);
  if (usage.status === "fulfilled") {
    renderUsage(usage.value);
    status.textContent = `updated ${new Date().toLocaleTimeString()} · ${usage.value.nodes.length} node(s)`;
    status.dataset.state = "ok";
  } else {
    const error = usage.reason;
    const needsToken = error instanceof api.ApiError && (error.status === 401 || error.status === 403);
    // The node says which token it needs (read or admin) and why.
    status.textContent = needsToken ? `enter a token: ${error.message}` : `usage unavailable: ${error}`;
    status.dataset.state = "error";
  }
}

function start(): void {
  const tokenInput = $<HTMLInputElement>("token");
  tokenInput.value = sessionStorage.getItem("weir-token") ?? "";
  api.setToken(tokenInput.value);
  tokenInput.addEventListener("change", () => {
    sessionStorage.setItem("weir-token", tokenInput.value);
    api.setToken(tokenInput.value);
    void refresh();
  });
  for (const id of ["range", "policy", "tier"]) $(id).addEventListener("change", () => void refresh());
  $("key-form").addEventListener("submit", (e) => { e.preventDefault(); void lookUpKey(); });
  $("assign-form").addEventListener("submit", (e) => { e.preventDefault(); void assign(); });
  window.addEventListener("resize", () => chart?.setSize({ width: $("chart").clientWidth, height: 220 }));
  void refresh();
  setInterval(() => void refresh(), REFRESH_MS);
}

start();
