// The one result format of every benchmark (`make bench` merges them into
// .build/bench/report.json; Benchmarks/report.py renders docs/performance.md's tables from
// it). Each measure keeps every run's value with min, median and max, and names the
// baseline measure it is compared with, so a new capability adds rows, not a format.
// Benchmarks/sandbox_startup.py and Benchmarks/soak.py write the same fields by hand.
import Foundation

/// One measure over the runs of a benchmark.
public struct Measure: Encodable, Sendable {
    public let name: String
    public let unit: String
    public let runs: [Double]
    /// The measure this one is compared with, side by side (nil: none).
    public let baseline: String?

    public init(name: String, unit: String, baseline: String? = nil, runs: [Double]) {
        self.name = name
        self.unit = unit
        self.runs = runs
        self.baseline = baseline
    }

    public var min: Double { runs.min() ?? .nan }
    public var max: Double { runs.max() ?? .nan }
    public var median: Double { Self.median(runs) }

    /// The middle value (the mean of the two middle ones for an even count); NaN for none.
    public static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    enum CodingKeys: String, CodingKey { case name, unit, runs, min, median, max, baseline }

    public func encode(to encoder: any Encoder) throws {
        var fields = encoder.container(keyedBy: CodingKeys.self)
        try fields.encode(name, forKey: .name)
        try fields.encode(unit, forKey: .unit)
        try fields.encode(runs, forKey: .runs)
        try fields.encode(min, forKey: .min)
        try fields.encode(median, forKey: .median)
        try fields.encode(max, forKey: .max)
        try fields.encodeIfPresent(baseline, forKey: .baseline)
    }
}

/// The machine a benchmark ran on, in the fields sandbox_startup.py writes too.
public struct Machine: Encodable, Sendable {
    public let nproc: Int
    public let cpuModel: String
    public let kernel: String
    public let cgroups: String

    enum CodingKeys: String, CodingKey {
        case nproc
        case cpuModel = "cpu_model"
        case kernel, cgroups
    }

    public static func current() -> Machine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":", maxSplits: 1).last
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cgroups =
            FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers")
            ? "v2" : FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory") ? "v1" : "none found"
        return Machine(
            nproc: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown",
            kernel: kernel, cgroups: cgroups)
    }

    public var description: String { "\(nproc) CPUs (\(cpuModel)), Linux \(kernel), cgroup \(cgroups)" }
}

/// A benchmark's whole result: what ran, on what, its measures, and what went wrong (any
/// failure makes the benchmark exit non-zero).
public struct BenchReport: Encodable, Sendable {
    /// The version of this format (Benchmarks/bench_report.py's `FORMAT`): a reader
    /// refuses one it does not know.
    public let format = 1
    public let benchmark: String
    /// The command that produces this report.
    public let command: String
    public let commit: String
    public let machine: Machine
    public let date: String
    /// What the run was given (orders, clients, rate…), as printed.
    public let parameters: [String: String]
    public let measures: [Measure]
    public let failures: [String]

    public init(benchmark: String, command: String, root: String, parameters: [String: String], measures: [Measure], failures: [String]) {
        self.benchmark = benchmark
        self.command = command
        self.commit = Self.commit(root: root)
        self.machine = .current()
        self.date = Date().formatted(.iso8601)
        self.parameters = parameters
        self.measures = measures
        self.failures = failures
    }

    /// The commit measured, and whether the tree differs from it.
    public static func commit(root: String) -> String {
        func git(_ arguments: String...) -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["git", "-C", root] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { return "" }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let head = git("rev-parse", "--short", "HEAD")
        let dirty = !git("status", "--porcelain", "--untracked-files=no").isEmpty
        return (head.isEmpty ? "unknown" : head) + (dirty ? " (with uncommitted changes)" : "")
    }

    /// The printed table: each measure's median, min – max.
    public func printTable(runCount: Int) {
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        func number(_ value: Double) -> String { abs(value) >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value) }
        let width = Swift.max(40, (measures.map(\.name.count).max() ?? 0) + 2)
        print(pad("measure", width) + pad("median", 22) + "min – max (\(runCount) runs where repeated)")
        for measure in measures {
            print(pad(measure.name, width) + pad(number(measure.median) + " " + measure.unit, 22) + "\(number(measure.min)) – \(number(measure.max))")
        }
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
    }
}
