// The platform the add-in's tests run against, as Tests/support/server.py starts it:
// embedded Kafka (`aerogrid kafka up`), `aerogrid serve` with a configuration file and
// AEROGRID_OPERATOR_TOKEN, a tenant allowed the `orders` topic, the ordersapp deployed as a
// zip and started, and orders produced with Examples/ordersapp/produce_orders.py.
//
// Every wait has a deadline. Processes are stopped by their own pid only.

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const AEROGRID = process.env.AEROGRID_BIN || path.join(REPO, ".build", "debug", "aerogrid");
export const ORDERSAPP = path.join(REPO, "Examples", "ordersapp");
export const PYTHON = process.env.PYTHON || "python3";
export const APP = "ordersapp";
export const GRID = "product_sum";

export function log(message) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fetch()` until `predicate(result)` holds; fails after `timeout` ms with the last result. */
export async function poll(fetch, predicate, timeout, what, interval = 200) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fetch();
      if (predicate(last)) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) {
      const shown = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}; last: ${String(shown).slice(0, 600)}`);
    }
    await sleep(interval);
  }
}

/** Where the server says clients reach it (its `public_url`): the add-in's manifest names it. */
export const PUBLIC_URL = "https://excel.example.com:8443";

/** Whether this is a CI run (CI set to true or 1): there a missing prerequisite fails. */
export function inCI() {
  return ["1", "true", "yes"].includes(String(process.env.CI || "").trim().toLowerCase());
}

/**
 * The `skip` option for a suite that needs `missing` (null: nothing is missing). Locally a
 * skip says loudly what is missing; in CI the suite runs and its `before` fails on
 * `requirePrerequisites`, so a suite that cannot run its prerequisites never passes there.
 */
export function skipUnlessReady(missing) {
  if (!missing) return false;
  if (inCI()) return false;
  console.error(`\n${"=".repeat(78)}\nSKIPPED: the add-in suite needs ${missing}; in CI this fails\n${"=".repeat(78)}`);
  return `needs ${missing}`;
}

/** Throws when something is missing (run in a suite's `before`). */
export function requirePrerequisites(missing) {
  if (missing) throw new Error(`cannot run: needs ${missing} (scripts/setup installs what is missing)`);
}

/** Why the platform cannot run here, or null. */
export function missingPrerequisites() {
  const problems = [];
  if (process.getuid && process.getuid() !== 0) problems.push("root (the supervisor creates cgroups and namespaces)");
  if (!fs.existsSync(AEROGRID)) problems.push(`${AEROGRID} (swift build, or set AEROGRID_BIN)`);
  if (typeof WebSocket === "undefined") problems.push("a global WebSocket (node 20 with --experimental-websocket)");
  const kafka = spawnSync(PYTHON, ["-c", "import confluent_kafka"], { stdio: "ignore" });
  if (kafka.status !== 0) problems.push("confluent-kafka for produce_orders.py (pip install confluent-kafka)");
  return problems.length ? problems.join(", ") : null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function newToken() {
  return "agt_" + randomBytes(32).toString("base64url");
}

/** A child process in its own process group, stderr (and stdout unless read) to files. */
class Managed {
  constructor(name, argv, directory, { env, readStdout = false } = {}) {
    this.name = name;
    this.stderrPath = path.join(directory, `${name}.stderr`);
    this.stdoutPath = path.join(directory, `${name}.stdout`);
    const stderr = fs.openSync(this.stderrPath, "a");
    const stdout = readStdout ? "pipe" : fs.openSync(this.stdoutPath, "a");
    this.proc = spawn(argv[0], argv.slice(1), { cwd: REPO, env: env || process.env, stdio: ["ignore", stdout, stderr], detached: true });
    this.exited = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve({ code, signal })));
    this.alive = true;
    this.exited.then(() => { this.alive = false; });
    fs.closeSync(stderr);
    if (!readStdout) fs.closeSync(stdout);
  }

  get pid() { return this.proc.pid; }

  signal(name) {
    if (this.alive) {
      try { process.kill(this.proc.pid, name); } catch { /* gone */ }
    }
  }

  async stop(timeout = 60000) {
    if (!this.alive) return this.exited;
    this.signal("SIGTERM");
    let timer;
    const done = await Promise.race([this.exited, new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeout); })]);
    clearTimeout(timer);
    if (done) return done;
    this.signal("SIGKILL");
    return this.exited;
  }

  stderrTail(lines = 30) {
    try {
      return fs.readFileSync(this.stderrPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }
}

/** `aerogrid kafka up --topic orders:8`; `bootstrap` is its address. */
export class Kafka extends Managed {
  static async start(directory) {
    const kafka = new Kafka("kafka", [AEROGRID, "kafka", "up", "--topic", "orders:8"], directory, { readStdout: true });
    kafka.bootstrap = await new Promise((resolve, reject) => {
      let buffer = "";
      const timer = setTimeout(() => reject(new Error(`kafka up printed nothing in 30 s: ${kafka.stderrTail()}`)), 30000);
      kafka.proc.stdout.on("data", (chunk) => {
        if (kafka.bootstrap) return; // drained from here on
        buffer += chunk.toString();
        const line = buffer.split("\n").find((l) => l.startsWith("bootstrap.servers="));
        if (line) {
          clearTimeout(timer);
          resolve(line.split("=", 2)[1].trim());
        }
      });
      kafka.exited.then(() => reject(new Error(`kafka up exited: ${kafka.stderrTail()}`)));
    });
    log(`kafka: ${kafka.bootstrap} (pid ${kafka.pid})`);
    return kafka;
  }
}

/** `aerogrid serve --config FILE` on a port of its own; start() again after a kill reuses
 * the port, the data directory and the operator token. */
export class Server {
  constructor(directory, bootstrap, port) {
    this.directory = directory;
    this.port = port;
    this.host = "127.0.0.1";
    this.url = `http://127.0.0.1:${port}`;
    this.operatorToken = newToken();
    this.dataDir = path.join(directory, "data");
    this.tmpDir = path.join(directory, "tmp");
    fs.mkdirSync(this.tmpDir, { recursive: true, mode: 0o755 });
    this.configPath = path.join(directory, "server.toml");
    fs.writeFileSync(this.configPath, [
      `data_dir = "${this.dataDir}"`,
      `listen = "127.0.0.1:${port}"`,
      `public_url = "${PUBLIC_URL}"`,
      "",
      "[kafka]",
      `bootstrap = "${bootstrap}"`,
      "",
      "[kafka.properties]",
      `"fetch.wait.max.ms" = "10"`,
      "",
    ].join("\n"));
    this.starts = 0;
    this.process = null;
  }

  async start() {
    this.starts++;
    const env = { ...process.env, AEROGRID_OPERATOR_TOKEN: this.operatorToken, TMPDIR: this.tmpDir };
    this.process = new Managed(`server-${this.starts}`, [AEROGRID, "serve", "--config", this.configPath], this.directory, { env });
    log(`server: started (pid ${this.process.pid}, ${this.url})`);
    await poll(async () => {
      if (!this.process.alive) throw new Error(`the server exited: ${this.process.stderrTail()}`);
      return (await this.request("GET", "/readyz")).status;
    }, (status) => status === 200, 60000, "/readyz", 100);
  }

  async kill() {
    this.process.signal("SIGKILL");
    await this.process.exited;
  }

  async stop() {
    return this.process ? this.process.stop() : null;
  }

  /** An HTTP request: {status, headers, body (Buffer), json()}. */
  request(method, pathname, { token, body, contentType, headers = {} } = {}) {
    return new Promise((resolve, reject) => {
      const all = { Accept: "application/json", ...headers };
      if (token) all.Authorization = `Bearer ${token}`;
      if (body !== undefined) {
        all["Content-Type"] = contentType || "application/json";
        all["Content-Length"] = Buffer.byteLength(body);
      }
      const req = http.request({ host: this.host, port: this.port, method, path: pathname, headers: all, timeout: 60000 }, (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => {
          const data = Buffer.concat(chunks);
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: data,
            text: () => data.toString("utf8"),
            json: () => JSON.parse(data.toString("utf8")),
          });
        });
      });
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error(`${method} ${pathname}: timed out`)));
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  async expect(status, method, pathname, options) {
    const answer = await this.request(method, pathname, options);
    if (answer.status !== status) throw new Error(`${method} ${pathname}: expected ${status}, got ${answer.status} ${answer.text().slice(0, 500)}`);
    return answer;
  }

  /** The `aerogrid_stream_subscriptions` gauge from /metrics. */
  async streamSubscriptions() {
    const answer = await this.expect(200, "GET", "/metrics", { token: this.operatorToken, headers: { Accept: "text/plain" } });
    const line = answer.text().split("\n").find((l) => /^aerogrid_stream_subscriptions(\{\})?\s/.test(l));
    if (!line) throw new Error("no aerogrid_stream_subscriptions in /metrics");
    return Number(line.trim().split(/\s+/).pop());
  }
}

/** A zip of an app (app.toml and app.py) named `name`, built with `python3 -m zipfile -c`. */
export function bundle(directory, name = APP) {
  const source = path.join(directory, `bundle-${name}`);
  fs.mkdirSync(source, { recursive: true, mode: 0o755 });
  const code = fs.readFileSync(path.join(ORDERSAPP, "app.py"), "utf8").replace("'ordersapp'", `'${name}'`);
  const manifest = fs.readFileSync(path.join(ORDERSAPP, "app.toml"), "utf8").replace('"ordersapp"', `"${name}"`);
  fs.writeFileSync(path.join(source, "app.py"), code);
  fs.writeFileSync(path.join(source, "app.toml"), manifest);
  const zip = path.join(directory, `${name}.zip`);
  fs.rmSync(zip, { force: true });
  const made = spawnSync(PYTHON, ["-m", "zipfile", "-c", zip, path.join(source, "app.toml"), path.join(source, "app.py")], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(`python3 -m zipfile failed: ${made.stderr}`);
  return fs.readFileSync(zip);
}

/** Writes `count` orders; answers the units per product they hold (the script's last line). */
export function produce(bootstrap, count, seed, rate = 0) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [path.join(ORDERSAPP, "produce_orders.py"), "--broker", bootstrap, "--count", String(count),
      "--seed", String(seed), "--rate", String(rate)],
      { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    child.stdout.on("data", (c) => { out += c; });
    child.stderr.on("data", (c) => { err += c; });
    const timer = setTimeout(() => child.kill("SIGKILL"), 120000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`produce_orders.py exited ${code}: ${err}`));
      const lines = out.trim().split("\n");
      resolve(JSON.parse(lines[lines.length - 1]));
    });
  });
}

/** The platform for one test file: Kafka, the server, a tenant with the ordersapp running. */
export class Platform {
  static async start() {
    const platform = new Platform();
    platform.directory = fs.mkdtempSync(path.join(os.tmpdir(), "aerogrid-excel-"));
    fs.chmodSync(platform.directory, 0o755); // the sandbox's uid reads below it
    platform.kafka = await Kafka.start(platform.directory);
    platform.server = new Server(platform.directory, platform.kafka.bootstrap, await freePort());
    await platform.server.start();
    platform.tenant = `excel-${randomBytes(4).toString("hex")}`;
    const created = (await platform.server.expect(201, "POST", "/api/v1/tenants",
      { token: platform.server.operatorToken, body: JSON.stringify({ name: platform.tenant, topics: ["orders"] }) })).json();
    platform.token = created.admin_token.secret;
    platform.totals = {};
    platform.seed = 0;
    await platform.deploy(APP);
    return platform;
  }

  get url() { return this.server.url; }

  async deploy(name) {
    const zip = bundle(this.directory, name);
    await this.server.expect(201, "POST", "/api/v1/apps", { token: this.token, body: zip, contentType: "application/zip" });
    await this.server.expect(200, "POST", `/api/v1/apps/${name}/start`, { token: this.token });
    await this.waitState(name, "running");
  }

  async app(name) {
    return (await this.server.expect(200, "GET", `/api/v1/apps/${name}`, { token: this.token })).json();
  }

  async waitState(name, state, timeout = 60000) {
    return poll(() => this.app(name), (app) => app.state === state, timeout, `app ${name} ${state}`);
  }

  /** Produces a wave of orders (at `rate` a second, or as fast as it can) and adds them to `totals`. */
  async produce(count, rate = 0) {
    this.seed++;
    const wave = await produce(this.kafka.bootstrap, count, this.seed, rate);
    for (const [product, units] of Object.entries(wave)) this.totals[product] = (this.totals[product] || 0) + units;
    return wave;
  }

  /** Waits until GET …/grids/product_sum has exactly the totals; answers the grid. */
  async waitGrid(timeout = 60000) {
    const expected = Object.fromEntries(Object.entries(this.totals).map(([k, v]) => [k, { units_sold: v }]));
    return poll(async () => (await this.server.request("GET", `/api/v1/apps/${APP}/grids/${GRID}`, { token: this.token })).json(),
      (grid) => JSON.stringify(sortObject(grid.rows)) === JSON.stringify(sortObject(expected)), timeout, "the grid to equal the totals");
  }

  async close() {
    const began = Date.now();
    try {
      const stopped = await this.server.stop();
      log(`server: exited (${stopped ? stopped.code ?? stopped.signal : "?"}) ${((Date.now() - began) / 1000).toFixed(2)} s after SIGTERM`);
    } finally {
      await this.kafka.stop(20000);
      removeTenantCgroups([this.tenant]);
      if (process.env.AEROGRID_EXCEL_KEEP) log(`test files kept in ${this.directory}`);
      else fs.rmSync(this.directory, { recursive: true, force: true });
    }
  }
}

function sortObject(object) {
  return Object.fromEntries(Object.keys(object || {}).sort().map((k) => [k, object[k]]));
}

/** The tenant's cgroup directories the server leaves behind (rmdir removes only empty ones). */
export function removeTenantCgroups(tenants) {
  const root = "/sys/fs/cgroup";
  const roots = fs.existsSync(path.join(root, "cgroup.controllers"))
    ? [path.join(root, "aerogrid")]
    : fs.readdirSync(root).map((c) => path.join(root, c, "aerogrid")).filter((p) => fs.existsSync(p));
  for (const base of roots) {
    for (const tenant of tenants) {
      const directory = path.join(base, tenant);
      if (!fs.existsSync(directory)) continue;
      for (const entry of fs.readdirSync(directory, { withFileTypes: true })) {
        if (entry.isDirectory()) {
          try { fs.rmdirSync(path.join(directory, entry.name)); } catch { /* busy */ }
        }
      }
      try { fs.rmdirSync(directory); } catch { /* busy */ }
    }
  }
}

/** The expected GRID array for units per product: header, then products in key order. */
export function expectedGrid(totals) {
  const products = Object.keys(totals).sort(compareCodePoints);
  return [["key", "units_sold"], ...products.map((p) => [p, totals[p]])];
}

function compareCodePoints(a, b) {
  const pa = Array.from(a.normalize("NFC"), (c) => c.codePointAt(0));
  const pb = Array.from(b.normalize("NFC"), (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return pa.length - pb.length;
}
