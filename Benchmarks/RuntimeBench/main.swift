// aerogrid-bench: the runtime's speed and memory, side by side with a baseline.
//
//   1. the seed app end to end (Kafka → supervisor → sandboxed Python → grid) against
//      the pinned bare consumer (Benchmarks/baseline) on the same cluster and topic, in turn, `--runs`
//      times: records/s, the CPU-seconds each side used (the bare consumer's process; the
//      supervisor's own threads plus the app's cgroup) and records per CPU-second, the
//      seed app at one CPU and at the profile's default quota (half a core, with its
//      cgroup's throttled periods);
//   2. records/s through IPC with a trivial native handler (Benchmarks/native_handler.c);
//   3. latency from a record's produce time to its grid change at a steady 1,000 orders/s;
//   4. the supervisor's resident memory with one app and with ten.
//
// Run with `make bench` (a release build). Kafka runs in its own process (`aerogrid kafka
// up`), so its threads are counted on neither side, nor in the supervisor's memory.
//
// It exits non-zero, saying why, when a result is wrong: the baseline missing or failing, a
// grid not exact, a count short, a part past its deadline. `--json FILE` writes every
// measure with its runs, min, median and max, the commit and the machine.
import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridSandbox
import AeroGridStore
import BenchReport
import Foundation
import Logging
import Synchronization

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
/// `--runs N`: how many times each side of a comparison runs (the report gives min, median, max).
let runCount = max(1, arguments.firstIndex(of: "--runs").flatMap { Int(arguments[$0 + 1]) } ?? 3)
/// `--baseline FILE`: the program the seed app is compared with (default: the pinned copy,
/// Benchmarks/baseline/bare_consumer.py).
let baselinePath = arguments.firstIndex(of: "--baseline").map { arguments[$0 + 1] } ?? "\(root)/Benchmarks/baseline/bare_consumer.py"
/// `--json FILE`: the report, machine-readable.
let jsonFile = arguments.firstIndex(of: "--json").map { arguments[$0 + 1] }
/// `--test-hook inexact-grid`: the expected grid is changed by one unit, so the check that
/// the seed app's grid is exact must fail (tests show the benchmark fails when it should).
let testHook = arguments.firstIndex(of: "--test-hook").map { arguments[$0 + 1] }

/// What went wrong; any of it fails the run at the end, after the report.
var failures: [String] = []

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
    // The aerogrid built with this benchmark (release for `make bench`, debug in tests).
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("aerogrid")
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

/// The tenants the apps ran for: their cgroups are removed at the end.
let tenantsUsed = Mutex<Set<String>>([])

/// `cpus` nil: the profile's default quota (half a core for python.json).
func spec(_ name: String, bundle: String, bootstrap: String, tenant: String = "bench", profile: CompiledProfile, cpus: Double? = nil) -> AppSpec {
    tenantsUsed.withLock { _ = $0.insert(tenant) }
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

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
}

/// CPU-seconds (user + system) of this process's threads, or of its reaped children.
func cpuSeconds(_ who: __rusage_who) -> Double {
    var usage = rusage()
    getrusage(who.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// One side's run: its records, its time from the first record, and the CPU it used.
struct SideRun {
    let records: Int
    /// The records read while the clock ran (the seed app's first batch is not).
    let timedRecords: Int
    let seconds: Double
    let cpuSeconds: Double
    /// Of `cpuSeconds`, the app's own process (its cgroup); the rest is the supervisor's.
    var appCPUSeconds: Double?
    var throttledPeriods: UInt64?
    var recordsPerSecond: Double { Double(timedRecords) / seconds }
    var recordsPerCPUSecond: Double { Double(records) / cpuSeconds }
}

/// Runs an app until it has applied `records`, within `deadline`. Its time counts from its
/// first applied record; its CPU is the supervisor's own (every thread of this process,
/// from before the app starts to after it stops) plus its process's cgroup, read just
/// before the stop.
func timeApp(_ runner: AppRunner, records: Int, deadline: Duration = .seconds(300)) async throws -> SideRun {
    let cpuBefore = cpuSeconds(RUSAGE_SELF)
    let task = Task { try await runner.run() }
    let giveUp = ContinuousClock.now + deadline
    func wait(until condition: () -> Bool, _ what: String) async throws {
        while !condition() {
            guard ContinuousClock.now < giveUp else {
                runner.stop()
                try? await task.value
                throw BenchFailure(description: "\(runner.spec.id): \(what) within \(deadline) (\(runner.grids.appliedRecords) records applied)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
    try await wait(until: { runner.grids.appliedRecords > 0 }, "no record applied")
    let first = ContinuousClock.now
    // The clock starts once the first batch is applied: the records/s count the rest.
    let appliedAtFirst = runner.grids.appliedRecords
    try await wait(until: { runner.grids.appliedRecords >= records }, "not every record applied")
    let elapsed = seconds(ContinuousClock.now - first)
    let usage = runner.usage()
    runner.stop()
    try await task.value
    guard appliedAtFirst < records, elapsed > 0.001 else {
        throw BenchFailure(
            description:
                "\(runner.spec.id): too short to time (\(appliedAtFirst) of \(records) records in the first batch, then \(elapsed) s): give more --orders")
    }
    let appCPU = Double(usage?.cpuNanoseconds ?? 0) / 1e9
    return SideRun(
        records: records, timedRecords: records - appliedAtFirst, seconds: elapsed, cpuSeconds: cpuSeconds(RUSAGE_SELF) - cpuBefore + appCPU,
        appCPUSeconds: appCPU,
        throttledPeriods: usage?.throttledPeriods)
}

/// The baseline on the cluster: its records, time and CPU (its process, reaped).
func runBaseline(bootstrap: String, group: String, expectedTotal: Int64) throws -> SideRun {
    guard FileManager.default.fileExists(atPath: baselinePath) else {
        throw BenchFailure(description: "the baseline \(baselinePath) is missing: the seed app has nothing to be compared with")
    }
    let cpuBefore = cpuSeconds(RUSAGE_CHILDREN)
    let output = shell("timeout 300 python3 \(baselinePath) \(bootstrap) orders \(group) \(orderCount) 2>&1")
    let cpu = cpuSeconds(RUSAGE_CHILDREN) - cpuBefore
    func field(_ name: String) -> String? { output.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) } }
    guard let records = field("records").flatMap({ Int($0) }), let elapsed = field("seconds").flatMap({ Double($0) }),
        let total = field("total").flatMap({ Int64($0) })
    else {
        throw BenchFailure(description: "the baseline failed: \(output.suffix(600))")
    }
    guard records == orderCount, total == expectedTotal, elapsed > 0 else {
        throw BenchFailure(description: "the baseline read \(records) of \(orderCount) orders, total \(total) of \(expectedTotal): its result is wrong")
    }
    return SideRun(records: records, timedRecords: records, seconds: elapsed, cpuSeconds: cpu)
}

var measures: [Measure] = []

let store = try Store(path: "/tmp/aerogrid-bench-\(getpid()).sqlite")
let python = try CompiledProfile.load(path: "\(root)/sandbox-profiles/python.json")
let strict = try CompiledProfile.load(path: "\(root)/sandbox-profiles/strict.json")
let commit = BenchReport.commit(root: root)
let machine = Machine.current().description
print("aerogrid-bench, \(Date()), commit \(commit) — \(machine)")

let (kafka, bootstrap) = try startKafka(["orders:16", "latency:4"])
defer { kafka.terminate() }
let seedApp = try String(contentsOfFile: "\(root)/Examples/ordersapp/app.py", encoding: .utf8)
print("producing \(orderCount) orders into 16 partitions…")
let truth = try await produceOrders(orderCount, bootstrap: bootstrap, topic: "orders")

// 1. The seed app against the bare consumer, on one cluster and topic, in turn.
if runs("seed") {
    var expected = truth
    if testHook == "inexact-grid", let product = expected.keys.sorted().first { expected[product]! += 1 }
    let expectedTotal = truth.values.reduce(0, +)
    var bare: [SideRun] = []
    var seedOneCPU: [SideRun] = []
    var seedDefault: [SideRun] = []
    let bundle = try makeBundle("ordersapp", code: seedApp)
    do {
        for run in 1...runCount {
            bare.append(try runBaseline(bootstrap: bootstrap, group: "bench-bare-\(getpid())-\(run)", expectedTotal: expectedTotal))
            // One core, as the bare consumer has (its interpreter is one thread too); then the
            // profile's default quota, half a core.
            for (cpus, results) in [(1.0 as Double?, 0), (nil, 1)] {
                let tenant = "bench\(run)\(cpus == nil ? "d" : "c")"
                let seed = AppRunner(
                    spec: spec("ordersapp", bundle: bundle, bootstrap: bootstrap, tenant: tenant, profile: python, cpus: cpus), store: store, logger: logger)
                let measured = try await timeApp(seed, records: orderCount)
                let wrong = expected.filter { product, sum in
                    guard case .int(let value)? = seed.grids.snapshot("product_sum")?.grid.rows[.string(product)]?["units_sold"] else { return true }
                    return value != sum
                }
                if !wrong.isEmpty {
                    throw BenchFailure(
                        description:
                            "run \(run): the seed app's grid is not exact (\(wrong.count) of \(expected.count) products differ, e.g. \(wrong.keys.sorted().first!))"
                    )
                }
                if results == 0 { seedOneCPU.append(measured) } else { seedDefault.append(measured) }
            }
            print(
                "run \(run): bare \(Int(bare.last!.recordsPerSecond))/s \(Int(bare.last!.recordsPerCPUSecond))/CPU-s; seed at 1 CPU \(Int(seedOneCPU.last!.recordsPerSecond))/s \(Int(seedOneCPU.last!.recordsPerCPUSecond))/CPU-s; at the default quota \(Int(seedDefault.last!.recordsPerSecond))/s, throttled \(seedDefault.last!.throttledPeriods ?? 0) periods"
            )
        }
    } catch {
        failures.append("\(error)")
    }
    if bare.count == runCount && seedOneCPU.count == runCount && seedDefault.count == runCount {
        measures += [
            Measure(name: "bare consumer, records/s", unit: "records/s", runs: bare.map(\.recordsPerSecond)),
            Measure(name: "bare consumer, CPU-seconds", unit: "s", runs: bare.map(\.cpuSeconds)),
            Measure(name: "bare consumer, records per CPU-second", unit: "records/CPU-s", runs: bare.map(\.recordsPerCPUSecond)),
            Measure(name: "seed app at 1 CPU, records/s", unit: "records/s", baseline: "bare consumer, records/s", runs: seedOneCPU.map(\.recordsPerSecond)),
            Measure(name: "seed app at 1 CPU, CPU-seconds", unit: "s", baseline: "bare consumer, CPU-seconds", runs: seedOneCPU.map(\.cpuSeconds)),
            Measure(
                name: "seed app at 1 CPU, records per CPU-second", unit: "records/CPU-s", baseline: "bare consumer, records per CPU-second",
                runs: seedOneCPU.map(\.recordsPerCPUSecond)),
            Measure(name: "seed app at 1 CPU, CPU-seconds of the app's process", unit: "s", runs: seedOneCPU.map { $0.appCPUSeconds ?? 0 }),
            Measure(name: "seed app at 1 CPU, throttled periods", unit: "periods", runs: seedOneCPU.map { Double($0.throttledPeriods ?? 0) }),
            Measure(
                name: "seed app at the default quota, records/s", unit: "records/s", baseline: "bare consumer, records/s",
                runs: seedDefault.map(\.recordsPerSecond)),
            Measure(name: "seed app at the default quota, CPU-seconds", unit: "s", baseline: "bare consumer, CPU-seconds", runs: seedDefault.map(\.cpuSeconds)),
            Measure(
                name: "seed app at the default quota, records per CPU-second", unit: "records/CPU-s", baseline: "bare consumer, records per CPU-second",
                runs: seedDefault.map(\.recordsPerCPUSecond)),
            Measure(name: "seed app at the default quota, CPU-seconds of the app's process", unit: "s", runs: seedDefault.map { $0.appCPUSeconds ?? 0 }),
            Measure(name: "seed app at the default quota, throttled periods", unit: "periods", runs: seedDefault.map { Double($0.throttledPeriods ?? 0) }),
            Measure(
                name: "seed app at 1 CPU ÷ bare consumer, records/s", unit: "×", runs: zip(seedOneCPU, bare).map { $0.recordsPerSecond / $1.recordsPerSecond }),
            Measure(
                name: "seed app at 1 CPU ÷ bare consumer, records per CPU-second", unit: "×",
                runs: zip(seedOneCPU, bare).map { $0.recordsPerCPUSecond / $1.recordsPerCPUSecond }),
        ]
    }
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
    measures.append(Measure(name: "consumer alone, records/s", unit: "records/s", runs: [Double(orderCount) / seconds(ContinuousClock.now - started)]))
    await consumer.close()
}

// 2. A native handler: the supervisor's own ceiling through IPC.
if runs("native") {
    _ = shell(
        "mkdir -p /tmp/aerogrid-bench-native && gcc -O2 -o /tmp/aerogrid-bench-native/handler \(root)/Benchmarks/native_handler.c && chmod -R a+rX /tmp/aerogrid-bench-native"
    )
    var nativeRates: [Double] = []
    do {
        for run in 1...runCount {
            var nativeSpec = spec(
                "native", bundle: try makeBundle("native", code: "# native handler\n"), bootstrap: bootstrap, tenant: "native\(run)", profile: strict)
            nativeSpec.nativeCommand = ["/tmp/aerogrid-bench-native/handler", "orders"]
            nativeSpec.maxBatchRecords = 10_000
            let native = AppRunner(spec: nativeSpec, store: store, logger: logger)
            nativeRates.append(try await timeApp(native, records: orderCount).recordsPerSecond)
        }
        measures.append(Measure(name: "native handler through IPC, records/s", unit: "records/s", runs: nativeRates))
    } catch {
        failures.append("native handler: \(error)")
    }
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
    var p50s: [Double] = []
    var p99s: [Double] = []
    for run in 1...runCount {
        let latency = AppRunner(
            spec: spec("latency", bundle: try makeBundle("latency", code: latencyApp), bootstrap: bootstrap, tenant: "latency\(run)", profile: python),
            store: store, logger: logger)
        let latencyTask = Task { try await latency.run() }
        while latency.status.lifecycle.state != .running { try await Task.sleep(for: .milliseconds(20)) }
        let changes = latency.grids.changes()
        // Each run produces its own 12,000 ticks; earlier runs' ticks are skipped by their key.
        let watcher = Task { () -> [Double] in
            var samples: [Double] = []
            for await change in changes {
                let now = Date().timeIntervalSince1970 * 1000
                for (key, row) in change.rows {
                    guard case .string(let name) = key, name.hasPrefix("r\(run)-"), case .int(let sent)? = row?["sent_ms"] else { continue }
                    samples.append(now - Double(sent))
                }
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
            try await tickProducer.enqueue(topic: "latency", key: Array("r\(run)-k\(index)".utf8), value: Array(#"{"product":"p","sent_ms":\#(sent)}"#.utf8))
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
        if let samplesFile {
            try arrivals.map { String(format: "%.2f", $0) }.joined(separator: "\n").write(toFile: samplesFile, atomically: true, encoding: .utf8)
        }
        let samples = Array(arrivals.dropFirst(2_000)).sorted()
        latency.stop()
        try await latencyTask.value
        guard arrivals.count == 12_000 else {
            failures.append("latency run \(run): \(arrivals.count) of 12,000 ticks reached the grid within 20 s")
            break
        }
        p50s.append(samples[samples.count / 2])
        p99s.append(samples[min(samples.count - 1, samples.count * 99 / 100)])
    }
    if p99s.count == runCount {
        measures.append(Measure(name: "latency produce → grid at 1,000/s, p50", unit: "ms", runs: p50s))
        measures.append(Measure(name: "latency produce → grid at 1,000/s, p99", unit: "ms", runs: p99s))
    }
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
        let deadline = ContinuousClock.now + .seconds(300)
        while runner.grids.appliedRecords < orderCount && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if runner.grids.appliedRecords < orderCount { failures.append("memory: app \(index + 1) of 10 did not catch up within 300 s") }
        if index == 0 { withOne = residentMiB() }
    }
    let withTen = residentMiB()
    for (runner, task) in runners {
        runner.stop()
        try await task.value
    }
    measures += [
        Measure(name: "supervisor RSS idle", unit: "MiB", runs: [idle]),
        Measure(name: "supervisor RSS with 1 app", unit: "MiB", runs: [withOne]),
        Measure(name: "supervisor RSS with 10 apps", unit: "MiB", runs: [withTen]),
    ]
}

print("")
let report = BenchReport(
    benchmark: "runtime", command: "make bench-runtime", root: root, parameters: ["orders": "\(orderCount)", "runs": "\(runCount)"], measures: measures,
    failures: failures)
report.printTable(runCount: runCount)
if let jsonFile { try report.write(to: jsonFile) }
try? FileManager.default.removeItem(atPath: "/tmp/aerogrid-bench-\(getpid()).sqlite")
// Each app's cgroup went with its process; the tenants' own are left to us.
Sandbox.removeCgroups(tenantsUsed.withLock { $0.sorted() }.map { [$0] })
if !failures.isEmpty {
    // exit() runs no defer: the cluster is stopped here, or it would hold our output open.
    kafka.terminate()
    kafka.waitUntilExit()
    for failure in failures { FileHandle.standardError.write(Data("aerogrid-bench: FAILED: \(failure)\n".utf8)) }
    exit(1)
}
