import AeroGridCore
public import AeroGridSandbox
import AeroGridStore
import Foundation

/// What one tenant may use in all: apps, memory and CPU of its running apps, client
/// connections (REST and streams) and stream subscriptions over all of them.
public struct TenantQuota: Sendable, Equatable {
    public var maxApps: Int
    public var memoryBytes: UInt64
    public var cpus: Double
    public var maxConnections: Int
    public var maxSubscriptions: Int

    public static let defaults = TenantQuota(maxApps: 20, memoryBytes: 4 << 30, cpus: 2, maxConnections: 200, maxSubscriptions: 2_000)
}

/// What one app may use; each within its tenant's quota.
public struct AppQuota: Sendable, Equatable {
    public var memoryBytes: UInt64
    public var cpus: Double
    public var pids: Int
    public var gridRows: Int

    public var cgroupLimits: CgroupLimits { CgroupLimits(memoryBytes: memoryBytes, cpus: cpus, pids: pids) }
}

/// Quota values as stored (a JSON object of the values set; the rest are the defaults),
/// and an operator's change to them.
enum QuotaJSON {
    static let tenantKeys = ["max_apps", "memory_bytes", "cpus", "max_connections", "max_subscriptions"]
    static let appKeys = ["memory_bytes", "cpus", "pids", "grid_rows"]

    /// What an operator may set: every value is bounded, so no sum or conversion of them
    /// can overflow (a quota near Int.max is refused, not trusted).
    static let ranges: [String: ClosedRange<Int>] = [
        "max_apps": 1...10_000, "memory_bytes": (16 << 20)...(1 << 40), "max_connections": 1...1_000_000,
        "max_subscriptions": 1...1_000_000, "pids": 1...4_194_304, "grid_rows": 1...100_000_000,
    ]
    static let maxCPUs = 1024.0

    /// The values set, by key: whole numbers, and `cpus`.
    struct Values: Codable, Equatable {
        var numbers: [String: Int] = [:]
        var cpus: Double?

        init() {}

        /// Leniently: a value of the wrong type or out of its range is left out (the
        /// default applies), never trusted.
        init(stored text: String) {
            guard let object = try? JSONDecoder().decode([String: StoredNumber].self, from: Data(text.utf8)) else { return }
            for (key, value) in object {
                if key == "cpus" {
                    let number =
                        switch value {
                        case .int(let whole): Double(whole)
                        case .double(let number): number
                        }
                    if number > 0, number <= maxCPUs { cpus = number }
                } else if case .int(let number) = value, ranges[key]?.contains(number) == true {
                    numbers[key] = number
                }
            }
        }

        var text: String {
            var object = numbers.mapValues { StoredNumber.int($0) }
            if let cpus { object["cpus"] = .double(cpus) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return String(decoding: (try? encoder.encode(object)) ?? Data("{}".utf8), as: UTF8.self)
        }
    }

    /// A stored number: whole, or not.
    enum StoredNumber: Codable, Equatable {
        case int(Int)
        case double(Double)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int.self) {
                self = .int(number)
            } else {
                self = .double(try container.decode(Double.self))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .int(let number): try container.encode(number)
            case .double(let number): try container.encode(number)
            }
        }
    }

    static func tenant(_ text: String) -> TenantQuota {
        let set = Values(stored: text)
        var quota = TenantQuota.defaults
        if let value = set.numbers["max_apps"] { quota.maxApps = value }
        if let value = set.numbers["memory_bytes"] { quota.memoryBytes = UInt64(value) }
        if let value = set.cpus { quota.cpus = value }
        if let value = set.numbers["max_connections"] { quota.maxConnections = value }
        if let value = set.numbers["max_subscriptions"] { quota.maxSubscriptions = value }
        return quota
    }

    static func app(_ text: String, defaults: AppQuota) -> AppQuota {
        let set = Values(stored: text)
        var quota = defaults
        if let value = set.numbers["memory_bytes"] { quota.memoryBytes = UInt64(value) }
        if let value = set.cpus { quota.cpus = value }
        if let value = set.numbers["pids"] { quota.pids = value }
        if let value = set.numbers["grid_rows"] { quota.gridRows = value }
        return quota
    }

    /// An operator's change: the values to set, and the keys sent as `null` (back to the
    /// default).
    struct Change: Sendable {
        var numbers: [String: Int] = [:]
        var cpus: Double?
        var reset: Set<String> = []
    }

    /// Applies a change to the stored values, checking each: a value out of range is
    /// refused with what is allowed.
    static func merge(_ change: Change, into stored: String) throws -> String {
        var set = Values(stored: stored)
        for key in change.reset {
            if key == "cpus" { set.cpus = nil } else { set.numbers[key] = nil }
        }
        if let cpus = change.cpus {
            guard cpus > 0, cpus <= maxCPUs else {
                throw APIError.badRequest("cpus must be a number of cores above 0 and at most 1024, such as 0.5")
            }
            set.cpus = cpus
        }
        // In key order: a refusal names the same value on every node applying the change.
        for (key, number) in change.numbers.sorted(by: { $0.key < $1.key }) {
            guard let range = ranges[key] else { throw APIError.badRequest("'\(key.cut(toBytes: 64))' is not a quota value") }
            guard range.contains(number) else {
                if key == "memory_bytes" {
                    throw APIError.badRequest("memory_bytes must be from 16 MiB (16777216; Python alone needs about 10 MiB) to 1 TiB (1099511627776)")
                }
                throw APIError.badRequest("\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            set.numbers[key] = number
        }
        return set.text
    }
}

/// A tenant's topic ACL: the topics its apps may consume, by exact name or by prefix
/// (`market.*`); `*` alone allows every topic. The default is the tenant's own prefix.
public struct TopicACL: Sendable, Equatable {
    public var rules: [String]

    static func defaults(tenant: String) -> TopicACL { TopicACL(rules: ["\(tenant).*"]) }

    static func stored(_ text: String?, tenant: String) -> TopicACL {
        guard let text, let rules = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
            return defaults(tenant: tenant)
        }
        return TopicACL(rules: rules)
    }

    var json: String {
        String(decoding: (try? JSONEncoder().encode(rules)) ?? Data("[]".utf8), as: UTF8.self)
    }

    /// Checks the rules' form: topic characters, with at most a trailing `*`.
    static func validated(_ rules: [String]) throws -> TopicACL {
        guard rules.count <= 100 else {
            throw APIError.badRequest("\"topics\" must be a list of up to 100 topic names or prefixes such as \"market.*\"")
        }
        for rule in rules {
            let name = rule.hasSuffix("*") ? String(rule.dropLast()) : rule
            let allowed = name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
            }
            guard !rule.isEmpty, rule.utf8.count <= 249, allowed, !name.contains("*") else {
                throw APIError.badRequest("topic rule '\(rule)' is not valid: a topic name, or a prefix ending in '*' (letters, digits, '.', '_', '-')")
            }
            // A rule that can only name internal topics would never allow anything: say so.
            if InternalTopics.isInternal(name) {
                throw APIError.badRequest(
                    "topic rule '\(rule)' names internal topics ('\(InternalTopics.prefix)…' are AeroGrid's, '\(InternalTopics.kafkaPrefix)…' Kafka's): no app may read them, whatever its ACL"
                )
            }
        }
        return TopicACL(rules: rules)
    }

    /// Why `topic` is refused, or nil when a rule allows it. An internal topic is refused
    /// whatever the rules (`*` included).
    func refusal(_ topic: String, tenant: String) -> String? {
        if let refused = InternalTopics.refusal(topic) { return refused }
        for rule in rules {
            if rule.hasSuffix("*") ? topic.hasPrefix(rule.dropLast()) : topic == rule { return nil }
        }
        return "topic '\(topic)' is outside tenant \(tenant)'s topic ACL (rules: \(rules.isEmpty ? "none" : rules.joined(separator: ", ")))"
    }
}

/// How an app is to run: its quota, its tenant's topic ACL, and the host uid its sandbox
/// maps to (its tenant's own).
public struct AppPlan: Sendable {
    public let quota: AppQuota
    public let topics: TopicACL
    public let tenantID: String
    public let hostUID: UInt32?
}

extension UInt64 {
    /// Bytes as the refusals show them: "256 MiB".
    var mebibytes: String { "\(self >> 20) MiB" }
}
