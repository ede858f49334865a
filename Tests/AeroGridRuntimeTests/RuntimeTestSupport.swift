import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridSandbox
import AeroGridStore
import Foundation
import Logging
import Testing

let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

let runtimeLogger: Logger = {
    var logger = Logger(label: "aerogrid.test.runtime")
    logger.logLevel = ProcessInfo.processInfo.environment["AEROGRID_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}()

let pythonProfile: CompiledProfile = try! CompiledProfile.load(path: "\(repositoryRoot)/sandbox-profiles/python.json")

/// An app bundle in a temporary directory the sandbox user (uid 65534) can read.
func makeBundle(name: String, code: String) throws -> String {
    let directory = "/tmp/aerogrid-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    try "name = \"\(name)\"\nentrypoint = \"app.py\"\n".write(toFile: "\(directory)/app.toml", atomically: true, encoding: .utf8)
    try code.write(toFile: "\(directory)/app.py", atomically: true, encoding: .utf8)
    for file in ["app.toml", "app.py"] {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: "\(directory)/\(file)")
    }
    return directory
}

/// A store in a temporary file, removed by the caller.
func makeStore() throws -> (Store, String) {
    let path = "/tmp/aerogrid-runtime-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sqlite"
    return (try Store(path: path), path)
}

func makeSpec(
    name: String, bundle: String, kafka: EmbeddedKafka, tenant: String = "tests",
    limits: AppLimits = AppLimits(), outOfRange: OutOfRangePolicy = .fail
) -> AppSpec {
    AppSpec(
        tenant: tenant, name: name, bundle: bundle, sdkPath: "\(repositoryRoot)/python", profile: pythonProfile,
        kafka: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), checkpointInterval: .milliseconds(200),
        outOfRangePolicy: outOfRange, appLimits: limits)
}

/// Runs `runner` in the background; call the returned closure to stop it and wait.
func start(_ runner: AppRunner) -> @Sendable () async throws -> Void {
    let task = Task { try await runner.run() }
    return {
        runner.stop()
        try await task.value
    }
}

func waitFor(_ what: String, timeout: Duration = .seconds(60), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw RuntimeTestError("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

struct RuntimeTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Orders as the seed app reads them, and their sums per product.
struct Orders {
    var records: [(key: String, value: String)] = []
    var sums: [String: Int64] = [:]

    mutating func add(_ product: String, _ quantity: Int64) {
        records.append(("order-\(records.count)", #"{"product":"\#(product)","quantity":\#(quantity)}"#))
        sums[product, default: 0] += quantity
    }

    mutating func addBad(_ value: String) {
        records.append(("bad-\(records.count)", value))
    }

    static func random(_ count: Int, products: [String] = ["Widget", "Gadget", "Gizmo", "Sprocket"]) -> Orders {
        var orders = Orders()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<count { orders.add(products.randomElement(using: &generator)!, Int64.random(in: 1...20, using: &generator)) }
        return orders
    }

    func produce(to kafka: EmbeddedKafka, topic: String = "orders") async throws {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers), logger: runtimeLogger)
        for record in records {
            try await producer.enqueue(topic: topic, key: Array(record.key.utf8), value: Array(record.value.utf8))
        }
        try await producer.flush()
    }
}

/// The grid's `units_sold` column as a dictionary.
func unitsSold(_ runner: AppRunner, grid: String = "product_sum") -> [String: Int64] {
    var sums: [String: Int64] = [:]
    for (key, row) in runner.grids.snapshot(grid)?.grid.rows ?? [:] {
        if case .int(let value)? = row["units_sold"] { sums[key.description] = value }
    }
    return sums
}

let seedApp = try! String(contentsOfFile: "\(repositoryRoot)/Examples/ordersapp/app.py", encoding: .utf8)
