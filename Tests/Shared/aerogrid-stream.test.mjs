// The stream client shared by the web console and the Excel add-in
// (clients/shared/aerogrid-stream.js), without a server: the key order against a list
// written out by hand, the backoff's delays, the grid replica's snapshots and deltas, and the
// connection against a fake socket and a fake clock.
//
//   node --test Tests/Shared/

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "clients", "shared", "aerogrid-stream.js");
const require = createRequire(import.meta.url);
const Stream = require(FILE);
const { Connection, GridReplica, compareKeys, keyId, retryDelay } = Stream;

// --------------------------------------------------------------------------------------------
// The key order

// The server's order (GridKey's `<`: integers in numeric order, then strings by the code
// points of their NFC forms), written out by hand, NOT computed: each line notes the first
// code points that place it.
const KEY_ORDER = [
  -42,
  -1,
  0,
  7,
  10, // numeric: 7 before 10
  42,
  1000,
  "", // the empty string first among the strings
  " ", // U+0020
  "!", // U+0021
  "0", // U+0030
  "10", // U+0031: as text "10" comes before "2"
  "2", // U+0032
  "42", // the string: after every integer, 42 included
  "A", // U+0041
  "Apple", // "A" is its prefix
  "B", // U+0042
  "Widget", // U+0057: capitals before lowercase
  "Zebra", // U+005A
  "_", // U+005F
  "apple", // U+0061
  "b", // U+0062
  "f", // U+0066 (unnormalized, "e\u0301" would come before it: "e" is U+0065)
  "widget", // U+0077
  "~", // U+007E
  "A\u030A", // decomposed Å: NFC U+00C5 (unnormalized it would follow "A")
  "e\u0301", // decomposed é: NFC U+00E9
  "\u00E9t\u00E9", // "été", precomposed: U+00E9 then U+0074
  "\u2764\uFE0F", // ❤️ U+2764 and a variation selector
  "\u4E2D", // 中 U+4E2D
  "\u65E5\u672C", // 日本 U+65E5
  "\u1100\u1161", // conjoining jamo: NFC U+AC00 가 (unnormalized, U+1100 would put it before 中)
  "\uAC01", // 각 U+AC01
  "\uE000", // private use U+E000: before every astral character, whose UTF-16 units start D800-DBFF
  "\uFB01", // ﬁ U+FB01: NFC keeps it (only NFKC would make it "fi")
  "\uFF5E", // ～ U+FF5E: UTF-16 order would put it after 😀 (D83D DE00)
  "\uFFFD", // U+FFFD
  "\u{10000}", // 𐀀 U+10000 (D800 DC00)
  "\u{1F600}", // 😀 U+1F600 (D83D DE00)
  "\u{1F600}a", // 😀 is its prefix
  "\u{1F64F}", // 🙏 U+1F64F: the same first unit as 😀, a greater second one
  "\u{1F900}", // 🤀 U+1F900 (D83E DD00)
  "\u{20000}", // 𠀀 U+20000 (D840 DC00)
];

/** A fixed shuffle (a linear congruential generator): the same on every run. */
function shuffled(list, seed) {
  const copy = [...list];
  let state = seed;
  for (let i = copy.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

describe("the key order", () => {
  test("sorts the hand-written list into its order, from any order", () => {
    for (const start of [[...KEY_ORDER].reverse(), shuffled(KEY_ORDER, 1), shuffled(KEY_ORDER, 7), shuffled(KEY_ORDER, 2024)]) {
      assert.deepEqual(start.sort(compareKeys), KEY_ORDER);
    }
    for (let i = 0; i + 1 < KEY_ORDER.length; i++) {
      const [a, b] = [KEY_ORDER[i], KEY_ORDER[i + 1]];
      assert.equal(compareKeys(a, b), -1, `${JSON.stringify(a)} before ${JSON.stringify(b)}`);
      assert.equal(compareKeys(b, a), 1, `${JSON.stringify(b)} after ${JSON.stringify(a)}`);
      assert.equal(compareKeys(a, a), 0);
    }
  });

  test("the list tells the server's order from JavaScript's `<` and from unnormalized code points", () => {
    // If the client sorted either of these ways, the test above would fail.
    const utf16 = (a, b) => (typeof a === typeof b ? (a < b ? -1 : a > b ? 1 : 0) : typeof a === "number" ? -1 : 1);
    const rawCodePoints = (a, b) => {
      if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
      if (typeof a === "number") return a - b;
      const [x, y] = [Array.from(a, (c) => c.codePointAt(0)), Array.from(b, (c) => c.codePointAt(0))];
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
      return x.length - y.length;
    };
    assert.notDeepEqual([...KEY_ORDER].sort(utf16), KEY_ORDER);
    assert.notDeepEqual([...KEY_ORDER].sort(rawCodePoints), KEY_ORDER);
    assert.ok("\u{1F600}" < "\uFF5E", "UTF-16 units put the emoji first");
    assert.equal(compareKeys("\uFF5E", "\u{1F600}"), -1, "code points put it last");
    assert.equal(compareKeys("\uE000", "\u{10000}"), -1);
    assert.equal(compareKeys("\uFFFD", "\u{1F600}"), -1);
    // A lone surrogate (a server key never has one) is a code point of its own: U+D83D then
    // U+E000 comes before U+1F600, though its second unit is greater than 😀's.
    assert.equal(compareKeys("\uD83D\uE000", "\u{1F600}"), -1);
    assert.equal(compareKeys("\u{1F600}", "\uD83D\uE000"), 1);
  });

  test("canonically equivalent strings are one key; 42 and \"42\" are two", () => {
    assert.equal(compareKeys("e\u0301", "\u00E9"), 0);
    assert.equal(compareKeys("\u212B", "\u00C5"), 0, "ANGSTROM SIGN is Å");
    assert.equal(compareKeys("\u1100\u1161", "\uAC00"), 0);
    assert.equal(keyId("e\u0301"), keyId("\u00E9"));
    assert.equal(keyId("A\u030A"), keyId("\u212B"));
    assert.notEqual(keyId("\uFB01"), keyId("fi"), "NFC, not NFKC");
    assert.notEqual(keyId(42), keyId("42"));
    assert.equal(compareKeys(42, "42"), -1);
    assert.equal(compareKeys("42", 42), 1);
  });

  test("a replica keeps its rows in that order", () => {
    const replica = new GridReplica();
    replica.applySnapshot({ type: "snapshot", epoch: 1, version: 1, columns: ["v"],
      rows: shuffled(KEY_ORDER, 5).map((key, i) => [key, { v: i }]) });
    assert.deepEqual(replica.sortedRows().map((row) => row.key), KEY_ORDER);
  });
});

// --------------------------------------------------------------------------------------------
// The backoff

describe("the backoff", () => {
  test("0.5 s doubling to 10 s, each delay within 20% either way", () => {
    const middle = [0, 1, 2, 3, 4, 5, 6, 7, 12, 40].map((attempt) => retryDelay(attempt, 0.5));
    assert.deepEqual(middle, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000, 10000]);
    const lowest = [0, 1, 2, 3, 4, 5, 6].map((attempt) => retryDelay(attempt, 0));
    assert.deepEqual(lowest, [400, 800, 1600, 3200, 6400, 8000, 8000]);
    const highest = [0, 1, 2, 3, 4, 5, 6].map((attempt) => retryDelay(attempt, 1 - 1e-12));
    assert.deepEqual(highest, [600, 1200, 2400, 4800, 9600, 12000, 12000]);
    assert.deepEqual(Stream.BACKOFF, { initial: 500, max: 10000, jitter: 0.2 });
  });

  test("a connection waits those delays after each failure, starts over once authenticated, 30 s when over quota", () => {
    const { connection, sockets, clock } = fakeConnection({ random: () => 0.5 });
    connection.watchApps(() => {});
    const waits = [];
    for (let i = 0; i < 7; i++) {
      assert.equal(sockets.length, i + 1, `socket ${i + 1}`);
      sockets.at(-1).fail();
      assert.equal(connection.state, "waiting");
      waits.push(connection.retryAt - clock.now);
      clock.advance(connection.retryAt - clock.now);
    }
    assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
    // Authenticated: the next drop starts from 0.5 s again.
    sockets.at(-1).open();
    sockets.at(-1).receive({ type: "ready", tenant: "t", role: "viewer", protocol: 1 });
    assert.equal(connection.state, "connected");
    sockets.at(-1).drop();
    assert.equal(connection.retryAt - clock.now, 500);
    clock.advance(500);
    // The tenant's connections all taken: 30 s.
    sockets.at(-1).open();
    sockets.at(-1).receive({ type: "error", code: "over_quota", message: "the tenant has 200 stream connections open" });
    assert.equal(connection.state, "waiting");
    assert.equal(connection.retryAt - clock.now, 30000);
    // A refused token: no retry at all.
    clock.advance(30000);
    const before = sockets.length;
    sockets.at(-1).open();
    sockets.at(-1).receive({ type: "error", code: "unauthorized", message: "the token is not valid (unknown or revoked)" });
    assert.equal(connection.state, "refused");
    clock.advance(120000);
    assert.equal(sockets.length, before);
    connection.close();
  });
});

// --------------------------------------------------------------------------------------------
// The grid replica

describe("the grid replica", () => {
  test("a snapshot, then deltas: changed cells merged, new rows, null rows and cells removed", () => {
    const replica = new GridReplica();
    assert.equal(replica.hasSnapshot, false);
    let keysChanged = replica.apply({ type: "snapshot", epoch: 3, version: 118, columns: ["a", "b"],
      rows: [[7, { a: 1 }], [42, { a: 2, b: "x" }], ["42", { a: 3 }], ["Widget", { a: 4, b: null }]] });
    assert.equal(keysChanged, true);
    assert.equal(replica.hasSnapshot, true);
    assert.deepEqual([replica.epoch, replica.version, replica.size], [3, 118, 4]);
    assert.deepEqual(replica.columns, ["a", "b"]);
    assert.deepEqual(replica.row(42).cells, { a: 2, b: "x" });
    assert.deepEqual(replica.row("42").cells, { a: 3 }, "42 and \"42\" are two rows");
    const seven = replica.row(7);

    keysChanged = replica.apply({ type: "delta", epoch: 3, version: 121,
      rows: [[-1, { a: 0 }], [7, { b: true }], [42, null], ["42", { a: null }], ["Widget", { a: 4 }], ["e\u0301", { c: 9 }]] });
    assert.equal(keysChanged, true, "rows came and went");
    assert.equal(replica.version, 121);
    assert.equal(replica.row(7), seven, "a row keeps its object");
    assert.deepEqual(seven.cells, { a: 1, b: true }, "merged: a kept, b added");
    assert.equal(replica.row(42), null, "deleted");
    assert.deepEqual(replica.row("42").cells, {}, "a cell that comes as null is gone");
    assert.deepEqual(replica.row("\u00E9").cells, { c: 9 }, "found by its precomposed form too");
    assert.deepEqual(replica.sortedRows().map((row) => row.key), [-1, 7, "42", "Widget", "e\u0301"]);
    assert.deepEqual(replica.allColumns(), ["a", "b", "c"]);

    // Only cells change: the keys, and their order, stay.
    const sorted = replica.sortedRows();
    assert.equal(replica.apply({ type: "delta", epoch: 3, version: 122, rows: [[-1, { a: 5 }]] }), false);
    assert.equal(replica.sortedRows(), sorted);
    // The same key in its other form is the same row.
    assert.equal(replica.apply({ type: "delta", epoch: 3, version: 123, rows: [["\u00E9", { c: 10 }]] }), false);
    assert.equal(replica.size, 5);
    assert.deepEqual(replica.row("e\u0301").cells, { c: 10 });
    assert.equal(replica.apply({ type: "delta", epoch: 3, version: 124, rows: [["\u00E9", null]] }), true);
    assert.equal(replica.row("e\u0301"), null);
  });

  test("a snapshot replaces everything; rows that stay keep their objects; onCell names every changed cell", () => {
    const replica = new GridReplica();
    const changes = [];
    const onCell = (row, column, message) => changes.push([row.key, column, row.cells[column], message.type]);
    replica.apply({ type: "snapshot", epoch: 1, version: 5, columns: ["a", "b"], rows: [[1, { a: 1, b: 2 }], [2, { a: 3 }]] }, onCell);
    assert.deepEqual(changes, [[1, "a", 1, "snapshot"], [1, "b", 2, "snapshot"], [2, "a", 3, "snapshot"]]);
    const one = replica.row(1);

    changes.length = 0;
    replica.apply({ type: "delta", epoch: 1, version: 6, rows: [[1, { a: 1, b: 20 }], [2, { b: null }], [3, { a: 7 }], [2, null]] }, onCell);
    assert.deepEqual(changes, [[1, "b", 20, "delta"], [3, "a", 7, "delta"]], "an unchanged cell or a cell already absent is no change");

    // A new epoch: the snapshot is the whole grid.
    changes.length = 0;
    assert.equal(replica.apply({ type: "snapshot", epoch: 2, version: 1, columns: ["a"], rows: [[1, { a: 1 }], [4, { a: 8 }]] }, onCell), true);
    assert.equal(replica.row(1), one);
    assert.deepEqual(one.cells, { a: 1 });
    assert.deepEqual(changes, [[1, "b", undefined, "snapshot"], [4, "a", 8, "snapshot"]]);
    assert.deepEqual(replica.sortedRows().map((row) => row.key), [1, 4]);
    assert.deepEqual([replica.epoch, replica.version, replica.columns], [2, 1, ["a"]]);
    // The same keys again: nothing came or went.
    assert.equal(replica.apply({ type: "snapshot", epoch: 2, version: 2, columns: ["a"], rows: [[1, { a: 2 }], [4, { a: 8 }]] }), false);
    assert.equal(replica.apply({ type: "snapshot", epoch: 2, version: 3, columns: ["a"], rows: [] }), true);
    assert.equal(replica.size, 0);
    assert.equal(replica.apply({ type: "pong" }), false);
  });
});

// --------------------------------------------------------------------------------------------
// The connection, against a fake socket and a fake clock

function fakeClock() {
  const clock = {
    now: 1000000,
    timers: new Map(),
    nextId: 1,
    setTimeout(fn, delay) {
      const id = clock.nextId++;
      clock.timers.set(id, { fn, at: clock.now + delay, every: null });
      return id;
    },
    setInterval(fn, every) {
      const id = clock.nextId++;
      clock.timers.set(id, { fn, at: clock.now + every, every });
      return id;
    },
    clearTimeout(id) { clock.timers.delete(id); },
    clearInterval(id) { clock.timers.delete(id); },
    /** Moves the time on, running what falls due in order. */
    advance(ms) {
      const end = clock.now + ms;
      for (;;) {
        let next = null;
        for (const [id, timer] of clock.timers) if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
        if (!next) break;
        const [id, timer] = next;
        clock.now = timer.at;
        if (timer.every) timer.at += timer.every;
        else clock.timers.delete(id);
        timer.fn();
      }
      clock.now = end;
    },
  };
  return clock;
}

function fakeConnection(options = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
    open() { this.readyState = 1; this.onopen?.(); }
    receive(message) { this.onmessage?.({ data: JSON.stringify(message) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    fail() { this.readyState = 3; this.onerror?.({}); }
    subscribes() { return this.sent.filter((m) => m.op === "subscribe"); }
  }
  const clock = fakeClock();
  const timers = { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, setInterval: clock.setInterval,
    clearInterval: clock.clearInterval, now: () => clock.now };
  const connection = new Connection({ server: "https://h:8443", token: "agt_t", WebSocket: FakeSocket, timers, ...options });
  return { connection, sockets, clock };
}

describe("the connection", () => {
  test("connect(): auth first, the apps, `ready`; a refusal, the quota and three failures reject", async () => {
    const { connection, sockets } = fakeConnection();
    const connected = connection.connect();
    assert.equal(sockets.length, 1, "opened with nothing subscribed");
    assert.equal(sockets[0].url, "wss://h:8443/api/v1/stream");
    sockets[0].open();
    assert.deepEqual(sockets[0].sent, [{ op: "auth", token: "agt_t" }, { op: "watch_apps" }]);
    const ready = { type: "ready", tenant: "trading", role: "viewer", protocol: 1 };
    sockets[0].receive(ready);
    assert.deepEqual(await connected, ready);
    assert.equal(connection.tenant, "trading");
    connection.close();
    assert.equal(sockets[0].readyState, 3);

    const refused = fakeConnection();
    const answer = refused.connection.connect();
    refused.sockets[0].open();
    refused.sockets[0].receive({ type: "error", code: "forbidden", message: "an operator token" });
    await assert.rejects(answer, { code: "forbidden", message: "an operator token" });
    refused.connection.close();

    const full = fakeConnection();
    const quota = full.connection.connect();
    full.sockets[0].open();
    full.sockets[0].receive({ type: "error", code: "over_quota", message: "200 connections" });
    await assert.rejects(quota, { code: "over_quota", message: "200 connections" });
    full.connection.close();

    const nowhere = fakeConnection();
    let settled = null;
    nowhere.connection.connect().then(() => { settled = "resolved"; }, (error) => { settled = error; });
    for (let i = 0; i < 3; i++) {
      await Promise.resolve();
      assert.equal(settled, null, `still trying after ${i} failures`);
      nowhere.sockets.at(-1).fail();
      nowhere.clock.advance(nowhere.connection.retryAt - nowhere.clock.now);
    }
    await Promise.resolve();
    assert.equal(settled.code, "network");
    assert.match(settled.message, /cannot reach https:\/\/h:8443/);
    nowhere.connection.close();
  });

  test("subscriptions: shared, routed to their replica with onCell and updates, sent again after a drop, unsubscribed", () => {
    const { connection, sockets, clock } = fakeConnection({ maxRate: 2, lingerMs: 20 });
    const seen = [];
    const cells = [];
    const one = connection.subscribe({ app: "a", grid: "g" }, (sub, update) => seen.push(["one", update && update.type]),
      (row, column) => cells.push([row.key, column]));
    const two = connection.subscribe({ app: "a", grid: "g" }, (sub, update) => seen.push(["two", update && update.type]));
    const other = connection.subscribe({ app: "a", grid: "g", columns: ["x"], keys: [7] }, () => {});
    assert.equal(one.subscription, two.subscription, "the same request shares one subscription");
    assert.equal(sockets.length, 1);
    sockets[0].open();
    assert.deepEqual(sockets[0].subscribes().map(({ id, ...rest }) => rest), [
      { op: "subscribe", app: "a", grid: "g", max_rate: 2 },
      { op: "subscribe", app: "a", grid: "g", max_rate: 2, columns: ["x"], keys: [7] }]);
    const id = sockets[0].subscribes()[0].id;
    sockets[0].receive({ type: "ready", tenant: "t" });
    seen.length = 0;
    sockets[0].receive({ type: "delta", id, epoch: 1, version: 2, rows: [["k", { x: 0 }]] });
    assert.equal(one.subscription.replica.size, 0, "a delta before the snapshot is not applied");
    sockets[0].receive({ type: "subscribed", id, app: "a", grid: "g", max_rate: 2 });
    sockets[0].receive({ type: "snapshot", id, app: "a", grid: "g", epoch: 1, version: 3, columns: ["x"], rows: [["k", { x: 1 }]] });
    sockets[0].receive({ type: "delta", id, app: "a", grid: "g", epoch: 1, version: 4, rows: [["k", { x: 2 }], ["m", { x: 3 }]] });
    assert.deepEqual(seen, [["one", "snapshot"], ["two", "snapshot"], ["one", "delta"], ["two", "delta"]]);
    assert.deepEqual(cells, [["k", "x"], ["k", "x"], ["m", "x"]]);
    assert.deepEqual(one.subscription.replica.sortedRows().map((r) => [r.key, r.cells.x]), [["k", 2], ["m", 3]]);

    // A drop: the rows stay; a new socket after the backoff sends every subscription again.
    sockets[0].drop();
    assert.equal(connection.state, "waiting");
    assert.equal(one.subscription.replica.size, 2);
    clock.advance(connection.retryAt - clock.now);
    assert.equal(sockets.length, 2);
    sockets[1].open();
    assert.equal(sockets[1].subscribes().length, 2);
    const again = sockets[1].subscribes()[0].id;
    // A message of the old socket's id on the new one is not this subscription's.
    sockets[1].receive({ type: "snapshot", id, epoch: 9, version: 9, columns: [], rows: [] });
    assert.equal(one.subscription.replica.epoch, 1);
    sockets[1].receive({ type: "snapshot", id: again, epoch: 2, version: 1, columns: ["x"], rows: [["m", { x: 4 }]] });
    assert.deepEqual(one.subscription.replica.sortedRows().map((r) => [r.key, r.cells.x]), [["m", 4]]);

    // The last listener gone: it lingers, then unsubscribes.
    one.close();
    two.close();
    assert.deepEqual(sockets[1].sent.filter((m) => m.op === "unsubscribe"), []);
    clock.advance(20);
    assert.deepEqual(sockets[1].sent.filter((m) => m.op === "unsubscribe"), [{ op: "unsubscribe", id: again }]);
    other.close();
    connection.close();
  });

  test("watchApps: the list and each event with its message; a missing app subscribed again once deployed", () => {
    const { connection, sockets } = fakeConnection({ lingerMs: 0 });
    const calls = [];
    const stop = connection.watchApps((apps, conn, message) => calls.push([apps && apps.map((a) => a.name), message && message.type]));
    assert.deepEqual(calls[0], [null, null], "called at once: no apps known yet");
    const late = connection.subscribe({ app: "late", grid: "g" }, () => {});
    sockets[0].open();
    sockets[0].receive({ type: "ready", tenant: "t" });
    const first = sockets[0].subscribes()[0].id;
    sockets[0].receive({ type: "error", id: first, code: "not_found", message: "no app 'late'" });
    assert.deepEqual(late.subscription.error, { code: "not_found", message: "no app 'late'", what: "app" });
    calls.length = 0;
    sockets[0].receive({ type: "apps", apps: [{ name: "b", state: "running" }, { name: "a", state: "stopped" }] });
    sockets[0].receive({ type: "app", event: "deploy", app: { name: "late", state: "starting" } });
    assert.deepEqual(calls, [[["a", "b"], "apps"], [["a", "b", "late"], "app"]]);
    const resent = sockets[0].subscribes();
    assert.equal(resent.length, 2, "subscribed again");
    assert.notEqual(resent[1].id, first);
    assert.equal(late.subscription.error, null);
    sockets[0].receive({ type: "snapshot", id: resent[1].id, epoch: 1, version: 1, columns: ["x"], rows: [[1, { x: 1 }]] });
    assert.equal(late.subscription.replica.size, 1);
    // Deleted: its rows go and it says so.
    const updates = [];
    const watcher = connection.subscribe({ app: "late", grid: "g" }, (sub, update) => updates.push(update));
    sockets[0].receive({ type: "app", event: "delete", app: { name: "late" } });
    assert.deepEqual(updates, [{ type: "cleared", keysChanged: true }]);
    assert.equal(late.subscription.replica.hasSnapshot, false);
    assert.equal(late.subscription.error.what, "app");
    assert.deepEqual(connection.appList().map((a) => a.name), ["a", "b"]);
    watcher.close();
    late.close();
    stop();
    connection.close();
  });
});

// --------------------------------------------------------------------------------------------
// One file for both clients

describe("the file", () => {
  test("as a classic script it defines globalThis.AeroGridStream and nothing else", () => {
    const context = vm.createContext({});
    const before = new Set(Object.getOwnPropertyNames(vm.runInContext("globalThis", context)));
    vm.runInContext(fs.readFileSync(FILE, "utf8"), context, { filename: FILE });
    const added = Object.getOwnPropertyNames(vm.runInContext("globalThis", context)).filter((name) => !before.has(name));
    assert.deepEqual(added, ["AeroGridStream"]);
    assert.equal(typeof vm.runInContext("AeroGridStream.Connection", context), "function");
    assert.equal(vm.runInContext("AeroGridStream.compareKeys('\\uFF5E', '\\u{1F600}')", context), -1);
  });

  test("uses no syntax newer than ES2017 (the Edge webview of older Office builds)", () => {
    const source = fs.readFileSync(FILE, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(source, /\?\.|\?\?/, "optional chaining or nullish coalescing");
    assert.doesNotMatch(source, /^\s+(static\s+)?#[A-Za-z_]+/m, "a private class member");
  });
});
