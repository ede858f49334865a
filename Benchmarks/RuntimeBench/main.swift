// aerogrid-bench: the runtime's speed and memory, side by side with a baseline.
//
//   1. records/s of the seed app end to end (Kafka → supervisor → sandboxed Python → grid)
//      against ../shared/bench/bare_consumer.py on the same cluster, topic and run;
//   2. records/s through IPC with a trivial native handler (Benchmarks/native_handler.c);
//   3. latency from a record's produce time to its grid change at a steady 1,000 orders/s;
//   4. the supervisor's resident memory with one app and with ten.
//
// Run with `make bench` (a release build). Kafka runs in its own process (`aerogrid kafka
// up`), so its threads are not counted in the supervisor's memory.
import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridSandbox
import AeroGridStore
import Foundation
import Logging

let root: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
let logger: Logger = {
    var logger = Logger(label: "aerogrid.bench")
    logger.logLevel = .critical
    return logger
}()
let arguments = CommandLine.arguments
let orderCount = arguments.firstIndex(of: "--orders").flatMap { Int(arguments[$0 + 1]) } ?? 960_000
/// `--only NAME` runs one part: seed, native, latency or memory.
let only = arguments.firstIndex(of: "--only").map { arguments[$0 + 1] }
func runs(_ part: String) -> Bool { only == nil || only == part }
/// `--samples FILE` writes every latency sample (ms, in arrival order) for a closer look.
let samplesFile = arguments.firstIndex(of: "--samples").map { arguments[$0 + 1] }

func shell(_ command: String) -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let pipe = Pipe()
    process.standardOutput = pipe
    try? process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

func residentMiB() -> Double {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Double(Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}

/// `aerogrid kafka up` in its own process; its bootstrap address.
func startKafka(_ topics: [String]) throws -> (Process, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "\(root)/.build/release/aerogrid")
    process.arguments = ["kafka", "up"] + topics.flatMap { ["--topic", $0] }
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    var line: [UInt8] = []
    while let byte = try pipe.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { line.append(byte) }
    return (process, String(decoding: line, as: UTF8.self).replacingOccurrences(of: "bootstrap.servers=", with: ""))
}

let products = [
    "Widget", "Gadget", "Gizmo", "Sprocket", "Doohickey", "Thingamajig", "Flux Capacitor",
    "Left-handed Spanner", "Cable Organizer", "How to Win Friends",
]

func produceOrders(_ count: Int, bootstrap: String, topic: String) async throws -> [String: Int64] {
    let producer = try KafkaProducer(
        configuration: KafkaConfiguration(bootstrapServers: bootstrap, properties: ["linger.ms": "20", "batch.num.messages": "10000"]), logger: logger)
    var sums: [String: Int64] = [:]
    var generator = SystemRandomNumberGenerator()
    for index in 0..<count {
        let product = products.randomElement(using: &generator)!
        let quantity = Int64.random(in: 1...50, using: &generator)
        sums[product, default: 0] += quantity
        try await producer.enqueue(topic: topic, key: Array("order-\(index)".utf8), value: Array(#"{"product":"\#(product)","quantity":\#(quantity)}"#.utf8))
    }
    try await producer.flush(timeout: .seconds(120))
    return sums
}

func makeBundle(_ name: String, code: String) throws -> String {
    let directory = "/tmp/aerogrid-bench-\(name)-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    try "name = \"\(name)\"\n".write(toFile: "\(directory)/app.toml", atomically: true, encoding: .utf8)
    try code.write(toFile: "\(directory)/app.py", atomically: true, encoding: .utf8)
    _ = shell("chmod 644 \(directory)/app.toml \(directory)/app.py")
    return directory
}

let extraKafka: [String: String] = {
    var properties: [String: String] = [:]
    for case let (flag, value) in zip(arguments, arguments.dropFirst()) where flag == "--kafka" {
        let parts = value.split(separator: "=", maxSplits: 1).map(String.init)
        if parts.count == 2 { properties[parts[0]] = parts[1] }
    }
    return properties
}()

/// `cpus` nil: the profile's default quota (half a core for python.json).
func spec(_ name: String, bundle: String, bootstrap: String, tenant: String = "bench", profile: CompiledProfile, cpus: Double? = nil) -> AppSpec {
    let defaults = profile.quotaDefaults
    return AppSpec(
        tenant: tenant, name: name, bundle: bundle, sdkPath: "\(root)/python", profile: profile,
        limits: CgroupLimits(memoryBytes: defaults.memoryBytes, cpus: cpus ?? defaults.cpus, pids: defaults.pids),
        kafka: KafkaConfiguration(bootstrapServers: bootstrap, properties: extraKafka), checkpointInterval: .seconds(1),
        appLimits: AppLimits(gridRows: 1_000_000))
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// Runs an app until `done`, and returns the time from its first applied record.
func timeApp(_ runner: AppRunner, records: Int) async throws -> Double {
    let task = Task { try await runner.run() }
    while runner.grids.appliedRecords == 0 { try await Task.sleep(for: .milliseconds(1)) }
    let first = ContinuousClock.now
    while runner.grids.appliedRecords < records { try await Task.sleep(for: .milliseconds(2)) }
    let elapsed = seconds(ContinuousClock.now - first)
    runner.stop()
    try await task.value
    return elapsed
}

let store = try Store(path: "/tmp/aerogrid-bench-\(getpid()).sqlite")
let python = try CompiledProfile.load(path: "\(root)/sandbox-profiles/python.json")
let strict = try CompiledProfile.load(path: "\(root)/sandbox-profiles/strict.json")
var rows: [(String, String, String, String, String)] = []
print("aerogrid-bench, \(Date()) — \(shell("nproc")) CPUs, \(shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs")), Linux \(shell("uname -r"))")

let (kafka, bootstrap) = try startKafka(["orders:16", "latency:4"])
defer { kafka.terminate() }
let seedApp = try String(contentsOfFile: "\(root)/Examples/ordersapp/app.py", encoding: .utf8)
print("producing \(orderCount) orders into 16 partitions…")
let truth = try await produceOrders(orderCount, bootstrap: bootstrap, topic: "orders")

// 1. The seed app against the bare consumer, on one cluster and topic.
if runs("seed") {
    let bareOutput = shell("python3 \(root)/../shared/bench/bare_consumer.py \(bootstrap) orders bench-bare-\(getpid()) \(orderCount)")
    let bareRate = Double(bareOutput.split(separator: " ").first { $0.hasPrefix("rate=") }?.dropFirst(5) ?? "0") ?? 0
    // One core, as the bare consumer has: its interpreter is one thread too. (The default
    // quota, half a core, would measure the quota.)
    let seed = AppRunner(
        spec: spec("ordersapp", bundle: try makeBundle("ordersapp", code: seedApp), bootstrap: bootstrap, profile: python, cpus: 1),
        store: store, logger: logger)
    let seedSeconds = try await timeApp(seed, records: orderCount)
    let seedRate = Double(orderCount) / seedSeconds
    var exact = true
    for (product, sum) in truth {
        if case .int(let value)? = seed.grids.snapshot("product_sum")?.grid.rows[.string(product)]?["units_sold"], value == sum { continue }
        exact = false
    }
    rows.append(
        (
            "seed app end to end, records/s", String(format: "%.0f", seedRate), String(format: "bare consumer %.0f", bareRate),
            String(format: "%.2f×", seedRate / max(bareRate, 1)), "≥ 1.5× (grid exact: \(exact ? "yes" : "NO"))"
        ))
}

// 0. The Kafka consumer alone, into a sink that only counts: the ceiling under the others.
if only == "consume" {
    final class Counter: KafkaRecordSink, @unchecked Sendable {
        var count = 0
        func receive(_ record: KafkaRecordView) { count += 1 }
    }
    let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)), logger: logger)
    try await consumer.assign(Dictionary(uniqueKeysWithValues: (0..<16).map { (TopicPartition("orders", Int32($0)), KafkaStartOffset.beginning) }))
    let counter = Counter()
    _ = try await consumer.poll(maxMessages: 10_000, timeout: .seconds(5), into: counter)
    let started = ContinuousClock.now
    while counter.count < orderCount { _ = try await consumer.poll(maxMessages: 10_000, timeout: .milliseconds(100), into: counter) }
    rows.append(("consumer alone, records/s", String(format: "%.0f", Double(orderCount) / seconds(ContinuousClock.now - started)), "", "", ""))
    await consumer.close()
}

// 2. A native handler: the supervisor's own ceiling through IPC.
if runs("native") {
    _ = shell(
        "mkdir -p /tmp/aerogrid-bench-native && gcc -O2 -o /tmp/aerogrid-bench-native/handler \(root)/Benchmarks/native_handler.c && chmod -R a+rX /tmp/aerogrid-bench-native"
    )
    var nativeSpec = spec("native", bundle: try makeBundle("native", code: "# native handler\n"), bootstrap: bootstrap, profile: strict)
    nativeSpec.nativeCommand = ["/tmp/aerogrid-bench-native/handler", "orders"]
    nativeSpec.maxBatchRecords = 10_000
    let native = AppRunner(spec: nativeSpec, store: store, logger: logger)
    let nativeRate = Double(orderCount) / (try await timeApp(native, records: orderCount))
    rows.append(
        (
            "native handler through IPC, records/s", String(format: "%.0f", nativeRate),
            "\(native.status.batchesSent) batches of \(native.status.deliveredRecords / max(1, native.status.batchesSent))", "", "≥ 500,000"
        ))
}

// 3. Latency at a steady 1,000 orders/s: produce time in the record, grid change observed
//    here. The first two seconds warm up (connections, the first fetches) and are not counted.
if runs("latency") {
    let latencyApp = """
        import aerogrid
        app = aerogrid.App('latency', broker=BROKER_URI)
        class Tick(aerogrid.Record):
            product: str
            sent_ms: int
        ticks = app.topic('latency', key_type=str, value_type=Tick)
        last = app.Grid('last', columns=['sent_ms'])
        @app.stream(ticks)
        async def track(stream):
            async for key, tick in stream.items():
                last[key] = {'sent_ms': tick.sent_ms}
        """
    let latency = AppRunner(
        spec: spec("latency", bundle: try makeBundle("latency", code: latencyApp), bootstrap: bootstrap, profile: python), store: store, logger: logger)
    let latencyTask = Task { try await latency.run() }
    while latency.status.lifecycle.state != .running { try await Task.sleep(for: .milliseconds(20)) }
    let changes = latency.grids.changes()
    let watcher = Task { () -> [Double] in
        var samples: [Double] = []
        for await change in changes {
            let now = Date().timeIntervalSince1970 * 1000
            for (_, row) in change.rows { if case .int(let sent)? = row?["sent_ms"] { samples.append(now - Double(sent)) } }
            if samples.count >= 12_000 { break }
        }
        return samples
    }
    let tickProducer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: bootstrap, properties: ["linger.ms": "0"]), logger: logger)
    let tickStart = ContinuousClock.now
    for index in 0..<12_000 {
        let due = tickStart + .milliseconds(index)
        if due > ContinuousClock.now { try await Task.sleep(until: due) }
        let sent = Int64(Date().timeIntervalSince1970 * 1000)
        try await tickProducer.enqueue(topic: "latency", key: Array("k\(index)".utf8), value: Array(#"{"product":"p","sent_ms":\#(sent)}"#.utf8))
    }
    try await tickProducer.flush()
    let arrivals = await withTaskGroup(of: [Double]?.self) { group in
        group.addTask { await watcher.value }
        group.addTask {
            try? await Task.sleep(for: .seconds(20))
            return nil
        }
        let first = await group.next()!
        group.cancelAll()
        return first ?? []
    }
    if let samplesFile { try arrivals.map { String(format: "%.2f", $0) }.joined(separator: "\n").write(toFile: samplesFile, atomically: true, encoding: .utf8) }
    let samples = Array(arrivals.dropFirst(2_000)).sorted()
    latency.stop()
    try await latencyTask.value
    let p50 = samples.isEmpty ? .nan : samples[samples.count / 2]
    let p99 = samples.isEmpty ? .nan : samples[min(samples.count - 1, samples.count * 99 / 100)]
    rows.append(("latency produce → grid at 1,000/s, ms", String(format: "p50 %.1f, p99 %.1f", p50, p99), "\(samples.count) samples", "", "p99 ≤ 50"))
}

// 4. Resident memory: idle supervisor, one app, ten apps (each caught up, then idle).
if runs("memory") {
    let idle = residentMiB()
    var runners: [(AppRunner, Task<Void, any Error>)] = []
    var withOne = 0.0
    for index in 0..<10 {
        let runner = AppRunner(
            spec: spec("ordersapp", bundle: try makeBundle("ordersapp", code: seedApp), bootstrap: bootstrap, tenant: "rss\(index)", profile: python),
            store: store, logger: logger)
        runners.append((runner, Task { try await runner.run() }))
        while runner.grids.appliedRecords < orderCount { try await Task.sleep(for: .milliseconds(20)) }
        if index == 0 { withOne = residentMiB() }
    }
    let withTen = residentMiB()
    for (runner, task) in runners {
        runner.stop()
        try await task.value
    }
    rows.append(
        (
            "supervisor RSS, MiB", String(format: "1 app %.0f, 10 apps %.0f", withOne, withTen), String(format: "idle %.0f", idle),
            String(format: "%.1f MiB per app", (withTen - withOne) / 9), ""
        ))
}

print("")
let widths = [40, 28, 26, 18]
func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
print(pad("benchmark", widths[0]) + pad("result", widths[1]) + pad("baseline", widths[2]) + pad("ratio", widths[3]) + "target")
for row in rows {
    print(pad(row.0, widths[0]) + pad(row.1, widths[1]) + pad(row.2, widths[2]) + pad(row.3, widths[3]) + row.4)
}
try? FileManager.default.removeItem(atPath: "/tmp/aerogrid-bench-\(getpid()).sqlite")
