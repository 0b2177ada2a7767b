// The dashboard in a real browser (Debian's chromium through playwright-core)
// against three real weir nodes under generated traffic.
//
// WEIR_BIN names the weir binary (make test sets it); CHROMIUM the browser
// (default /usr/bin/chromium). Screenshots go to screenshots/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

const BIN = process.env.WEIR_BIN ?? "../target/debug/weir";
const BROWSER = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ADMIN = "dashboard-admin-token";
const READ = "dashboard-read-token";
const SECRET = "dashboard-test-cluster-secret";

const nodes = [];
let browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// The built-in config, with a rule that fires early and penalizes: the
// abuser's IP moves to a slow penalty tier (limited, so that the key view
// has limits to show) for 15 minutes.
const CONFIG = (() => {
  const builtin = execFileSync(BIN, ["default-config"], { encoding: "utf8" });
  const path = join(mkdtempSync(join(tmpdir(), "weir-dashboard-")), "weir.toml");
  writeFileSync(path, `${builtin.split("[alerts]")[0]}
[policies.per_ip.tiers.slowed]
penalty = true
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "1/s", burst = 2 },
  { name = "hourly", algorithm = "sliding_window", rate = "100/hour" },
]

[alerts]
[[alerts.rules]]
name = "hammering"
policy = "per_ip"
when = "denied"
threshold = 30
within = "1m"
exempt_tiers = ["trusted", "slowed"]
penalty = { tier = "slowed", for = "15m" }
`);
  return path;
})();

async function startNode(name, seed) {
  const [http, bin, gossip, sync] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const args = [
    "serve", "--node-id", name,
    "--http-addr", `127.0.0.1:${http}`, "--bin-addr", `127.0.0.1:${bin}`,
    "--gossip-addr", `127.0.0.1:${gossip}`, "--sync-addr", `127.0.0.1:${sync}`,
    "--admin-token", ADMIN, "--read-token", READ, "--log", "warn", "--config", CONFIG,
  ];
  if (seed) args.push("--seed", seed);
  const child = spawn(BIN, args, { env: { ...process.env, WEIR_CLUSTER_SECRET: SECRET }, stdio: ["ignore", "inherit", "inherit"] });
  const node = { name, child, url: `http://127.0.0.1:${http}`, gossip: `127.0.0.1:${gossip}` };
  nodes.push(node);
  return node;
}

async function until(what, probe, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${last}`);
}

async function json(url, init = {}) {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.json() };
}

const check = (node, body) =>
  json(`${node.url}/v1/check`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

const usage = (node, query = "") =>
  json(`${node.url}/v1/usage?${query}`, { headers: { authorization: `Bearer ${READ}` } });

before(async () => {
  const first = await startNode("a");
  await startNode("b", first.gossip);
  await startNode("c", first.gossip);
  for (const node of nodes) {
    await until(`${node.name} to see 3 live nodes`, async () => (await json(`${node.url}/v1/cluster`)).body.live === 3);
  }
  // Generated traffic: one abusive IP spread over every node, well past its
  // burst; a few well-behaved IPs; users on per_user.
  const sends = [];
  for (let i = 0; i < 90; i++) sends.push(check(nodes[i % 3], { policy: "per_ip", key: { ip: "203.0.113.66" } }));
  for (let i = 0; i < 12; i++) sends.push(check(nodes[i % 3], { policy: "per_ip", key: { ip: `198.51.100.${i}` } }));
  for (let i = 0; i < 30; i++) sends.push(check(nodes[i % 3], { policy: "per_user", key: { user: "mallory" } }));
  await Promise.all(sends);
  browser = await chromium.launch({
    executablePath: BROWSER,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  for (const node of nodes) node.child.kill("SIGKILL");
});

async function openDashboard(node) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  const outside = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(node.url)) outside.push(r.url());
  });
  await page.goto(`${node.url}/dashboard`);
  await page.fill("#token", ADMIN);
  await page.dispatchEvent("#token", "change");
  await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "ok");
  return { page, outside };
}

const number = (text) => Number(text.replace(/[^0-9]/g, ""));

test("every node's dashboard shows the cluster's totals and the abuser on top", async () => {
  // Counts reach the usage history within a second of the checks.
  const expected = await until("counts to settle", async () => {
    const reports = await Promise.all(nodes.map((n) => usage(n)));
    const totals = reports.map((r) => r.body.totals.allowed + r.body.totals.denied);
    return totals.every((t) => t === 132) && reports[0].body.totals;
  });
  for (const node of nodes) {
    const { page, outside } = await openDashboard(node);
    await page.waitForFunction(
      (want) => document.getElementById("tile-denied")?.textContent?.replace(/[^0-9]/g, "") === String(want),
      expected.denied,
    );
    const report = (await usage(node)).body;
    assert.equal(report.scope, "cluster");
    assert.deepEqual(report.missing, []);
    assert.equal(number(await page.textContent("#tile-allowed")), report.totals.allowed);
    assert.equal(number(await page.textContent("#tile-denied")), report.totals.denied);
    assert.equal(await page.textContent("#tile-nodes"), "3 / 3");
    const top = await page.textContent("#top-denied tbody tr:first-child");
    assert.match(top, /ip=203\.0\.113\.66/, `${node.name}: ${top}`);
    assert.equal(report.top_denied[0].key.ip, "203.0.113.66");
    assert.equal(report.top_denied[0].nodes, 3, "every node saw the abuser");
    await page.waitForSelector("#alerts tbody tr");
    const alertRows = await page.$$eval("#alerts tbody tr", (rows) => rows.map((r) => r.textContent));
    assert.equal(alertRows.length, 1, `one alert in the cluster: ${alertRows}`);
    assert.match(alertRows[0], /hammering.*ip=203\.0\.113\.66.*slowed until/);
    assert.match(await page.textContent("#top-denied tbody tr:first-child"), /penalty until/);
    assert.deepEqual(outside, [], "the page asks no other host");
    if (node.name === "a") {
      mkdirSync("screenshots", { recursive: true });
      await page.screenshot({ path: "screenshots/dashboard.png", fullPage: true });
    }
    await page.close();
  }
});

test("the key view shows a top key's limits and tier", async () => {
  const { page } = await openDashboard(nodes[1]);
  await page.click("#top-denied tbody tr:first-child");
  await page.waitForSelector("#key-limits");
  const limits = await page.textContent("#key-limits");
  assert.match(limits, /burst/);
  assert.match(limits, /hourly/);
  assert.match(await page.textContent("#key-tier"), /tier slowed \(from assignment to ip 203\.0\.113\.66, until/, "the alert's penalty");
  assert.match(await page.textContent("#key-recent"), /5m: allowed \d+, denied \d+/, "counted across the key's tiers");
  await page.close();
});

test("a tier assigned in the page changes the next decision on another node", async () => {
  // Spend the free burst (10, refilling at 5/s) right before looking. A
  // token refilled between two checks may let the last one through, so
  // what shows the burst spent is a denial among them.
  const spent = [];
  for (let i = 0; i < 30; i++) spent.push(await check(nodes[2], { policy: "per_user", key: { user: "mallory" } }));
  assert.ok(spent.every((reply) => reply.body.tier === "free"));
  assert.ok(spent.some((reply) => !reply.body.allowed), "mallory spent the free burst");

  const { page } = await openDashboard(nodes[0]);
  await page.selectOption("#key-policy", "per_user");
  await page.fill("#key-user", "mallory");
  await page.click("#key-form button");
  await page.waitForSelector("#key-limits");
  await page.selectOption("#assign-subject", "user");
  await page.selectOption("#assign-tier", "trusted");
  await page.click("#assign-form button");
  await page.waitForFunction(() => /is now trusted/.test(document.getElementById("assign-status")?.textContent ?? ""));
  await page.close();

  const after = await until("the assignment to reach node c", async () => {
    const reply = await check(nodes[2], { policy: "per_user", key: { user: "mallory" } });
    return reply.body.tier === "trusted" && reply;
  });
  assert.equal(after.body.allowed, true);
});

test("an operator can move the top abuser's IP to another tier for a while from the page", async () => {
  const { page } = await openDashboard(nodes[1]);
  await page.click("#top-denied tbody tr:first-child");
  await page.waitForSelector("#key-limits");
  assert.equal(await page.inputValue("#assign-subject"), "ip");
  await page.selectOption("#assign-tier", "trusted");
  await page.selectOption("#assign-for", "15m");
  await page.click("#assign-form button");
  await page.waitForFunction(() => /is now trusted for 15m/.test(document.getElementById("assign-status")?.textContent ?? ""));
  await page.waitForFunction(() => /from assignment to ip 203\.0\.113\.66, until/.test(document.getElementById("key-tier")?.textContent ?? ""));
  await page.close();
  const reply = await until("the penalty to reach node a", async () => {
    const r = await check(nodes[0], { policy: "per_ip", key: { ip: "203.0.113.66" } });
    return r.body.tier === "trusted" && r;
  });
  assert.equal(reply.body.allowed, true, "trusted is unlimited");
  // Node c learns the assignment by gossip too, maybe later than node a.
  const lapsing = await until("the assignment to reach node c", async () => {
    const tiers = await json(`${nodes[2].url}/v1/tiers`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const entry = tiers.body.lapsing.find((a) => a.id === "203.0.113.66");
    return entry?.tier === "trusted" && entry;
  });
  assert.ok(lapsing.until_ms > Date.now() + 14 * 60 * 1000);
});

test("without a token the page says what it needs", async () => {
  const page = await browser.newPage();
  await page.goto(`${nodes[0].url}/dashboard`);
  await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "error");
  assert.match(await page.textContent("#status"), /read token/);
  await page.close();
});
