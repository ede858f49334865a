// aerogrid-fanout-bench: the stream under load, next to a one-client baseline run.
//
// A real server (`aerogrid serve`, its own process, so its CPU and memory are its own)
// runs an app keeping a 1,000-row grid; this process produces records at a steady rate
// (each changes one cell) and holds the WebSocket clients, subscribed to that grid at the
// default rate. Per run: latency from a value's produce time to its receipt by a client
// (an upper bound of "grid write to receipt": it includes Kafka and the app), and per-change
// visibility latency (every change, on a sample of clients: the time until the client sees
// that change or a newer value of its row, so conflation cannot hide a slow change),
// messages/s out, the server's CPU and the whole machine's (from /proc/stat), the server's
// memory per idle client, and whether every client ends equal to the final grid. `--runs`
// (3) times, each run on a freshly started server, each measure's min, median and max; `--json FILE` writes the report in the
// format of every benchmark (Benchmarks/BenchReport). It exits non-zero, saying why, when a
// client cannot connect or take its snapshot within 60 s, or when a client does not end
// equal to the grid. Run with `make bench-fanout` (release builds).
import AeroGridKafka
import BenchReport
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

let root: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
var logger = Logger(label: "aerogrid.fanout-bench")
logger.logLevel = .critical
let arguments = CommandLine.arguments
func option(_ name: String, _ fallback: Int) -> Int { arguments.firstIndex(of: name).flatMap { Int(arguments[$0 + 1]) } ?? fallback }
let clientCount = option("--clients", 1000)
let changesPerSecond = option("--rate", 10_000)
let runSeconds = option("--seconds", 20)
let rowCount = option("--rows", 1000)
/// `--runs N`: one client then the full count, N times (the report gives min, median, max).
let runCount = max(1, option("--runs", 3))
/// `--json FILE`: the report, machine-readable.
let jsonFile = arguments.firstIndex(of: "--json").map { arguments[$0 + 1] }
// The aerogrid built with this benchmark (release for `make bench`, debug in tests).
let aerogrid =
    arguments.firstIndex(of: "--aerogrid").map { arguments[$0 + 1] }
    ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("aerogrid").path
/// `--test-hook too-few-connections`: the tenant may hold only half the clients, so some
/// cannot connect and the run must fail (tests show it does, instead of waiting).
let testHook = arguments.firstIndex(of: "--test-hook").map { arguments[$0 + 1] }

// MARK: The server

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    close(fd)
    return Int(UInt16(bigEndian: address.sin_port))
}

func shell(_ command: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    try? process.run()
    process.waitUntilExit()
}

func note(_ text: String) { FileHandle.standardError.write(Data("\(text)\n".utf8)) }

let operatorToken = "agt_fanout_bench_operator_token_0123456789"
let kafka = try EmbeddedKafka(logger: logger)
try kafka.createTopic("ticks", partitions: 4)
let directory = "/tmp/aerogrid-fanout-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: "\(directory)/app", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
defer { shell("rm -rf \(directory)") }
let port = freePort()
try """
data_dir = "\(directory)/data"
listen = "127.0.0.1:\(port)"
[kafka]
bootstrap = "\(kafka.bootstrapServers)"
[kafka.properties]
"fetch.wait.max.ms" = "5"
# Every client comes from 127.0.0.1, one network: each is anonymous until its upgrade
# authenticates, so the caps on anonymous connections must hold all of them at once.
[http]
max_anonymous_connections = \(clientCount + 100)
max_anonymous_connections_per_network = \(clientCount + 100)
""".write(toFile: "\(directory)/aerogrid.toml", atomically: true, encoding: .utf8)
/// `aerogrid serve` on the data directory, restarted before each run: a run's server has
/// held no clients before (its memory per idle client is not memory an earlier run's
/// clients left in the allocator), and it restores the tenant, the app and its grid.
final class ServerProcess: Sendable {
    private let process = Mutex<Process?>(nil)

    func start() throws {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: aerogrid)
        server.arguments = ["serve", "--config", "\(directory)/aerogrid.toml", "--log-level", "error"]
        server.environment = ProcessInfo.processInfo.environment.merging(["AEROGRID_OPERATOR_TOKEN": operatorToken]) { $1 }
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        process.withLock { $0 = server }
    }

    func stop() {
        guard let server = process.withLock({ $0 }) else { return }
        server.terminate()
        server.waitUntilExit()
    }

    var pid: Int32 { process.withLock { $0?.processIdentifier ?? 0 } }
}
let server = ServerProcess()
try server.start()
defer { server.stop() }
// Ctrl-C or a timeout takes the server down too.
let stopSignals = [SIGINT, SIGTERM].map { number in
    signal(number, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
    source.setEventHandler {
        server.stop()
        exit(130)
    }
    source.resume()
    return source
}
let base = "http://127.0.0.1:\(port)"

func http(_ method: String, _ path: String, token: String, body: Data? = nil, contentType: String = "application/json") -> (Int, Data) {
    var request = URLRequest(url: URL(string: base + path)!)
    request.httpMethod = method
    request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    request.setValue(contentType, forHTTPHeaderField: "Content-Type")
    request.httpBody = body
    let done = DispatchSemaphore(value: 0)
    let result = Mutex<(Int, Data)>((0, Data()))
    URLSession.shared.dataTask(with: request) { data, response, _ in
        result.withLock { $0 = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()) }
        done.signal()
    }.resume()
    done.wait()
    return result.withLock { $0 }
}

func json(_ data: Data) -> [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }

note("starting the server on port \(port)")
while http("GET", "/healthz", token: "").0 != 200 { usleep(100_000) }
note("creating the tenant and the app")
let tenant = json(
    http(
        "POST", "/api/v1/tenants", token: operatorToken,
        body: try JSONSerialization.data(withJSONObject: ["name": "bench", "topics": ["ticks"]])
    ).1)
let token = ((tenant["admin_token"] as? [String: Any])?["secret"] as? String)!
// Room for every client: the tenant's connection quota is 200 by default.
_ = http(
    "PUT", "/api/v1/tenants/bench/quota", token: operatorToken,
    body: try JSONSerialization.data(withJSONObject: ["max_connections": testHook == "too-few-connections" ? max(1, clientCount / 2) : clientCount + 10]))
try "name = \"ticker\"\n".write(toFile: "\(directory)/app/app.toml", atomically: true, encoding: .utf8)
try """
import aerogrid

app = aerogrid.App('ticker', broker=BROKER_URI)

class Tick(aerogrid.Record):
    sent_ms: int

ticks = app.topic('ticks', key_type=str, value_type=Tick)
cells = app.Grid('cells', columns=['sent_ms'], default=lambda: {'sent_ms': 0})

@app.stream(ticks)
async def record(stream):
    async for key, tick in stream.items():
        cells[key] = {'sent_ms': tick.sent_ms}
""".write(toFile: "\(directory)/app/app.py", atomically: true, encoding: .utf8)
shell("cd \(directory)/app && chmod 644 app.toml app.py && python3 -m zipfile -c ../ticker.zip app.toml app.py")
let deployed = http(
    "POST", "/api/v1/apps", token: token, body: try Data(contentsOf: URL(fileURLWithPath: "\(directory)/ticker.zip")), contentType: "application/zip")
guard deployed.0 == 201 else { fatalError("deploy failed: \(deployed.0) \(String(decoding: deployed.1, as: UTF8.self))") }
_ = http("POST", "/api/v1/apps/ticker/start", token: token)

// MARK: Producing

func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// Every change's produce time, per row, in order: what the sampled clients measure their
/// per-change visibility against.
final class ChangeLog: Sendable {
    private let times = Mutex([[Int64]](repeating: [], count: rowCount))

    func append(row: Int, at ms: Int64) { times.withLock { $0[row].append(ms) } }

    /// The produce times of row `row`'s changes from index `from` up to value `value`
    /// (those the client now sees), and the index after them.
    func visible(row: Int, from: Int, upTo value: Int64) -> ([Int64], Int) {
        times.withLock { times in
            var index = from
            var seen: [Int64] = []
            while index < times[row].count, times[row][index] <= value {
                seen.append(times[row][index])
                index += 1
            }
            return (seen, index)
        }
    }

    func reset() { times.withLock { $0 = [[Int64]](repeating: [], count: rowCount) } }
}
let changeLog = ChangeLog()

let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers, properties: ["linger.ms": "2"]), logger: logger)

/// `rate` records a second for `seconds`, each setting one row's cell to its produce time.
func produce(rate: Int, seconds: Int) async throws {
    let start = ContinuousClock.now
    let slices = 100  // per second
    var sent = 0
    for slice in 0..<(seconds * slices) {
        try await Task.sleep(until: start + .milliseconds(slice * 1000 / slices))
        let due = (slice + 1) * rate / slices
        while sent < due {
            let now = nowMs()
            changeLog.append(row: sent % rowCount, at: now)
            try await producer.enqueue(topic: "ticks", key: Array("k\(sent % rowCount)".utf8), value: Array(#"{"sent_ms":\#(now)}"#.utf8))
            sent += 1
        }
    }
    try await producer.flush(timeout: .seconds(30))
}

// Fill the grid and wait until the app has every row.
note("filling the grid")
try await produce(rate: rowCount * 2, seconds: 1)
while true {
    let grid = json(http("GET", "/api/v1/apps/ticker/grids/cells", token: token).1)
    if (grid["rows"] as? [String: Any])?.count == rowCount { break }
    try await Task.sleep(for: .milliseconds(200))
}

// MARK: Clients

/// One client: its rows as the stream told it, its latency histogram (1 ms buckets), its
/// message count. Messages are scanned, not parsed — keys are `k<n>`, kept by n in an array,
/// no String made — so the 2 cores go to the server: a client that took long over each
/// message would queue the next ones and measure its own slowness.
final class Client: @unchecked Sendable {
    // @unchecked: each client is touched by its one connection task, and read after it ends.
    var rows = [Int64](repeating: -1, count: rowCount)
    var rowsSeen = 0
    var latency = [Int](repeating: 0, count: 10_001)
    var messages = 0
    var counting = false
    /// Sampled clients also measure every change's visibility.
    var perChange: [Int]?
    private var nextChange = [Int](repeating: 0, count: rowCount)
    /// Why the connection ended early, if it did.
    var failure: String?

    /// From now on, changes logged from here on are the ones measured.
    func startCounting(sampled: Bool) {
        if sampled {
            perChange = [Int](repeating: 0, count: 10_001)
            nextChange = [Int](repeating: 0, count: rowCount)
        }
        counting = true
    }

    func receive(_ bytes: ByteBuffer) {
        let now = nowMs()
        messages += 1
        bytes.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            let count = raw.count
            // Rows: [["k12",{"sent_ms":1764…}],…] after "rows":[
            guard var index = find(base, count, Client.rowsMarker, from: 0) else { return }
            while let open = find(base, count, Client.keyMarker, from: index) {
                var cursor = open
                var key = 0
                while cursor < count, base[cursor] >= 48, base[cursor] <= 57 {
                    key = key * 10 + Int(base[cursor] - 48)
                    cursor += 1
                }
                guard let value = find(base, count, Client.valueMarker, from: cursor) else { break }
                var number: Int64 = 0
                var digit = value
                while digit < count, base[digit] >= 48, base[digit] <= 57 {
                    number = number * 10 + Int64(base[digit] - 48)
                    digit += 1
                }
                if key < rows.count {
                    if rows[key] < 0 { rowsSeen += 1 }
                    rows[key] = number
                }
                if counting { latency[Int(min(max(now - number, 0), 10_000))] += 1 }
                if counting, perChange != nil, key < rowCount {
                    let (seen, next) = changeLog.visible(row: key, from: nextChange[key], upTo: number)
                    nextChange[key] = next
                    for produced in seen { perChange![Int(min(max(now - produced, 0), 10_000))] += 1 }
                }
                index = digit
            }
        }
    }

    static let rowsMarker = Array(#""rows":["#.utf8)
    static let keyMarker = Array(#"["k"#.utf8)
    static let valueMarker = Array(#""sent_ms":"#.utf8)

    /// The index just after `needle` at or after `from` (memchr for its first byte).
    private func find(_ base: UnsafePointer<UInt8>, _ count: Int, _ needle: [UInt8], from: Int) -> Int? {
        var index = from
        while index + needle.count <= count {
            guard let hit = memchr(base + index, Int32(needle[0]), count - index - needle.count + 1) else { return nil }
            index = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if needle.withUnsafeBytes({ memcmp(base + index, $0.baseAddress!, needle.count) }) == 0 { return index + needle.count }
            index += 1
        }
        return nil
    }
}

func connect(_ clients: [Client]) -> [Task<Void, Never>] {
    let auth = #"{"op":"auth","token":"\#(token)"}"#
    let subscribe = #"{"op":"subscribe","id":"s","app":"ticker","grid":"cells"}"#
    return clients.map { client in
        Task {
            do {
                let close = try await WebSocketClient.connect(
                    url: "ws://127.0.0.1:\(port)/api/v1/stream", configuration: .init(maxFrameSize: 1 << 20), logger: logger
                ) { inbound, outbound, _ in
                    try await outbound.write(.text(auth))
                    try await outbound.write(.text(subscribe))
                    // Frames as they come (the server sends each message in one frame below
                    // 512 KiB): no String made of each.
                    for try await frame in inbound {
                        client.receive(frame.data)
                        if Task.isCancelled { break }
                    }
                }
                if !Task.isCancelled, let close, close.closeCode != .normalClosure {
                    client.failure = "the server closed the stream: \(close.closeCode) \(close.reason ?? "")"
                }
            } catch {
                if !Task.isCancelled { client.failure = "\(error)" }
            }
        }
    }
}

/// The whole machine's busy CPU-seconds (every core, every process), from /proc/stat.
func machineBusySeconds() -> Double {
    let line = ((try? String(contentsOfFile: "/proc/stat", encoding: .utf8)) ?? "").split(separator: "\n").first ?? ""
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard fields.count >= 8 else { return 0 }
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
}

func serverStat() -> (cpuSeconds: Double, rssMiB: Double) {
    let pid = server.pid
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
    let ticks = fields.count > 12 ? (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0) : 0
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.map { Double($0.split(separator: " ")[1]) ?? 0 } ?? 0
    return (ticks / Double(sysconf(Int32(_SC_CLK_TCK))), rss / 1024)
}

func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

struct RunResult {
    let clients: Int
    let generatorCPU: Double
    let p50: Int
    let p99: Int
    let perChangeP50: Int
    let perChangeP99: Int
    let messagesPerSecond: Double
    let serverCPU: Double
    let machineCPU: Double
    let idleKiBPerClient: Double
    let equal: Int
}

func percentile(_ histogram: [Int], _ fraction: Double) -> Int {
    let total = histogram.reduce(0, +)
    var seen = 0
    for (ms, count) in histogram.enumerated() {
        seen += count
        if Double(seen) >= fraction * Double(total) { return ms }
    }
    return histogram.count - 1
}

/// A fresh server process on the same data: healthy, its app running with the whole grid.
func restartServer() async throws {
    server.stop()
    try server.start()
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
        if http("GET", "/healthz", token: "").0 == 200,
            (json(http("GET", "/api/v1/apps/ticker/grids/cells", token: token).1)["rows"] as? [String: Any])?.count == rowCount
        {
            break
        }
        guard ContinuousClock.now < deadline else { throw BenchFailure(description: "the restarted server had not restored the grid within 60 s") }
        try await Task.sleep(for: .milliseconds(200))
    }
}

func run(clients count: Int) async throws -> RunResult {
    try await restartServer()
    let before = serverStat()
    note("connecting \(count) clients")
    let clients = (0..<count).map { _ in Client() }
    let tasks = connect(clients)
    // Every client has its snapshot (within 60 s, or the run fails); then the idle memory.
    let deadline = ContinuousClock.now + .seconds(60)
    while clients.contains(where: { $0.rowsSeen < rowCount }) {
        let failed = clients.compactMap(\.failure)
        if !failed.isEmpty || ContinuousClock.now > deadline {
            tasks.forEach { $0.cancel() }
            let waiting = clients.filter { $0.rowsSeen < rowCount }.count
            throw BenchFailure(
                description: "\(waiting) of \(count) clients have no snapshot\(failed.isEmpty ? " after 60 s" : ""); \(failed.count) could not connect"
                    + (failed.first.map { " (first: \($0))" } ?? ""))
        }
        try await Task.sleep(for: .milliseconds(200))
    }
    try await Task.sleep(for: .seconds(2))
    let idle = serverStat()
    note("producing \(changesPerSecond) changes/s for \(runSeconds) s")
    changeLog.reset()
    for (index, client) in clients.enumerated() { client.startCounting(sampled: index < 10) }
    let start = serverStat()
    let machineStart = machineBusySeconds()
    let ownStart = ownCPUSeconds()
    let messagesBefore = clients.reduce(0) { $0 + $1.messages }
    let began = ContinuousClock.now
    try await produce(rate: changesPerSecond, seconds: runSeconds)
    let elapsed = ContinuousClock.now - began
    let end = serverStat()
    let ownEnd = ownCPUSeconds()
    let machineEnd = machineBusySeconds()
    let messages = clients.reduce(0) { $0 + $1.messages } - messagesBefore
    clients.forEach { $0.counting = false }
    // The last values reach everyone within a few ticks.
    try await Task.sleep(for: .seconds(3))
    let final = json(http("GET", "/api/v1/apps/ticker/grids/cells", token: token).1)["rows"] as? [String: [String: Any]] ?? [:]
    var expected = [Int64](repeating: -1, count: rowCount)
    for (key, row) in final {
        if key.hasPrefix("k"), let n = Int(key.dropFirst()), n < rowCount { expected[n] = (row["sent_ms"] as? NSNumber)?.int64Value ?? -1 }
    }
    let equal = final.count == rowCount ? clients.filter { $0.rows == expected }.count : 0
    tasks.forEach { $0.cancel() }
    var histogram = [Int](repeating: 0, count: 10_001)
    for client in clients { for (ms, n) in client.latency.enumerated() { histogram[ms] += n } }
    var perChange = [Int](repeating: 0, count: 10_001)
    for client in clients { for (ms, n) in (client.perChange ?? []).enumerated() { perChange[ms] += n } }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    try await Task.sleep(for: .seconds(2))
    return RunResult(
        clients: count, generatorCPU: (ownEnd - ownStart) / seconds, p50: percentile(histogram, 0.5), p99: percentile(histogram, 0.99),
        perChangeP50: percentile(perChange, 0.5), perChangeP99: percentile(perChange, 0.99),
        messagesPerSecond: Double(messages) / seconds, serverCPU: (end.cpuSeconds - start.cpuSeconds) / seconds,
        machineCPU: (machineEnd - machineStart) / seconds,
        idleKiBPerClient: (idle.rssMiB - before.rssMiB) * 1024 / Double(count), equal: equal)
}

/// Fails the benchmark: the server stops first (exit runs no defer).
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("aerogrid-fanout-bench: FAILED: \(message)\n".utf8))
    server.stop()
    exit(1)
}

// One client, then the full count, `--runs` times in turn.
var baselines: [RunResult] = []
var loads: [RunResult] = []
do {
    for index in 1...runCount {
        note("run \(index) of \(runCount)")
        baselines.append(try await run(clients: 1))
        loads.append(try await run(clients: clientCount))
    }
} catch {
    fail("\(error)")
}

/// Each column of the table as measures, the loaded run next to the one-client run.
func measures(_ results: [RunResult], clients: Int, baselineClients: Int?) -> [Measure] {
    let columns: [(String, String, (RunResult) -> Double)] = [
        ("latency p50", "ms", { Double($0.p50) }),
        ("latency p99", "ms", { Double($0.p99) }),
        ("per-change latency p50", "ms", { Double($0.perChangeP50) }),
        ("per-change latency p99", "ms", { Double($0.perChangeP99) }),
        ("messages/s out", "messages/s", { $0.messagesPerSecond }),
        ("server CPU", "cores", { $0.serverCPU }),
        ("machine CPU", "cores", { $0.machineCPU }),
        ("load generator CPU", "cores", { $0.generatorCPU }),
    ]
    func name(_ column: String, _ count: Int) -> String { "\(count) client\(count == 1 ? "" : "s"), \(column)" }
    var measures = columns.map { column, unit, value in
        Measure(name: name(column, clients), unit: unit, baseline: baselineClients.map { name(column, $0) }, runs: results.map(value))
    }
    if baselineClients != nil {
        measures.append(Measure(name: name("server memory per idle client", clients), unit: "KiB", runs: results.map(\.idleKiBPerClient)))
    }
    return measures
}

var failures: [String] = []
for (index, (one, many)) in zip(baselines, loads).enumerated() where one.equal != one.clients || many.equal != many.clients {
    failures.append(
        "run \(index + 1): \(many.clients - many.equal) of \(many.clients) clients (and \(one.clients - one.equal) of 1) did not end equal to the grid")
}
let report = BenchReport(
    benchmark: "fanout", command: "make bench-fanout", root: root,
    parameters: [
        "clients": "\(clientCount)", "changes per second": "\(changesPerSecond)", "seconds": "\(runSeconds)", "rows": "\(rowCount)", "runs": "\(runCount)",
    ],
    measures: measures(baselines, clients: 1, baselineClients: nil) + measures(loads, clients: clientCount, baselineClients: 1), failures: failures)
print("fan-out, \(report.date), commit \(report.commit), \(report.machine.description)")
print("grid of \(rowCount) rows, \(changesPerSecond) cell changes/s for \(runSeconds) s, subscriptions at the default 4 messages/s")
print("")
report.printTable(runCount: runCount)
print("")
let loadedP99 = Measure.median(loads.map { Double($0.p99) })
let baselineP99 = Measure.median(baselines.map { Double($0.p99) })
let idleKiB = Measure.median(loads.map(\.idleKiBPerClient))
print(
    String(
        format: "median p99 %d clients / 1 client: %.2f; target p99 ≤ 300 ms: %@; target ≤ 50 KiB per idle client: %@",
        clientCount, loadedP99 / max(baselineP99, 1), loadedP99 <= 300 ? "met" : "missed", idleKiB <= 50 ? "met" : "missed"))
print("(latency is from a value's produce time to its receipt: it includes Kafka and the app, so it bounds the stream's own from above;")
print(" the load generator shares the 2 cores with the server: its CPU is in its row)")
print(" per-change: every change, on 10 sampled clients, until the client sees it or a newer value of its row")
print(" every client of every run ended equal to the grid, or the run fails")
if let jsonFile { try report.write(to: jsonFile) }
withExtendedLifetime(stopSignals) {}
if !failures.isEmpty { fail(failures.joined(separator: "; ")) }
