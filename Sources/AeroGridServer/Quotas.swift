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

/// Quota values as stored: only those set, as a JSON object; the rest are the defaults.
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

    static func decode(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func encode(_ object: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// A stored value within its range (what `merge` let in; anything else is ignored).
    private static func bounded(_ set: [String: Any], _ key: String) -> Int? {
        guard let value = set[key] as? Int, ranges[key]?.contains(value) == true else { return nil }
        return value
    }

    private static func cpus(_ set: [String: Any]) -> Double? {
        guard let value = set["cpus"] as? Double, value > 0, value <= maxCPUs else { return nil }
        return value
    }

    static func tenant(_ text: String) -> TenantQuota {
        let set = decode(text)
        var quota = TenantQuota.defaults
        if let value = bounded(set, "max_apps") { quota.maxApps = value }
        if let value = bounded(set, "memory_bytes") { quota.memoryBytes = UInt64(value) }
        if let value = cpus(set) { quota.cpus = value }
        if let value = bounded(set, "max_connections") { quota.maxConnections = value }
        if let value = bounded(set, "max_subscriptions") { quota.maxSubscriptions = value }
        return quota
    }

    static func app(_ text: String, defaults: AppQuota) -> AppQuota {
        let set = decode(text)
        var quota = defaults
        if let value = bounded(set, "memory_bytes") { quota.memoryBytes = UInt64(value) }
        if let value = cpus(set) { quota.cpus = value }
        if let value = bounded(set, "pids") { quota.pids = value }
        if let value = bounded(set, "grid_rows") { quota.gridRows = value }
        return quota
    }

    /// Merges a request's values into the stored ones, checking each: an unknown key or a
    /// value out of range is refused with what is allowed.
    static func merge(_ request: [String: Any], into stored: String, keys: [String]) throws -> String {
        var set = decode(stored)
        for (key, value) in request {
            guard keys.contains(key) else {
                throw APIError.badRequest("unknown quota '\(key)' (known: \(keys.joined(separator: ", ")))")
            }
            if value is NSNull { set[key] = nil; continue }
            // JSON's true and false arrive as numbers too: told apart by their type code.
            if let number = value as? NSNumber, ["c", "B"].contains(String(cString: number.objCType)) {
                throw APIError.badRequest("\(key) must be a number, not \(number.boolValue)")
            }
            switch key {
            case "cpus":
                guard let number = value as? Double, number > 0, number <= maxCPUs else {
                    throw APIError.badRequest("cpus must be a number of cores above 0 and at most 1024, such as 0.5")
                }
                set[key] = number
            default:
                let range = ranges[key]!
                guard let number = value as? Int, range.contains(number) else {
                    if key == "memory_bytes" {
                        throw APIError.badRequest("memory_bytes must be from 16 MiB (16777216; Python alone needs about 10 MiB) to 1 TiB (1099511627776)")
                    }
                    throw APIError.badRequest("\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                }
                set[key] = number
            }
        }
        return encode(set)
    }
}

/// A tenant's topic ACL: the topics its apps may consume, by exact name or by prefix
/// (`market.*`); `*` alone allows every topic. The default is the tenant's own prefix.
public struct TopicACL: Sendable, Equatable {
    public var rules: [String]

    static func defaults(tenant: String) -> TopicACL { TopicACL(rules: ["\(tenant).*"]) }

    static func stored(_ text: String?, tenant: String) -> TopicACL {
        guard let text, let rules = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String] else {
            return defaults(tenant: tenant)
        }
        return TopicACL(rules: rules)
    }

    var json: String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: rules)) ?? Data("[]".utf8), as: UTF8.self)
    }

    /// Checks the rules' form: topic characters, with at most a trailing `*`.
    static func validated(_ value: Any?) throws -> TopicACL {
        guard let rules = value as? [String], rules.count <= 100 else {
            throw APIError.badRequest("\"topics\" must be a list of up to 100 topic names or prefixes such as \"market.*\"")
        }
        for rule in rules {
            let name = rule.hasSuffix("*") ? String(rule.dropLast()) : rule
            let allowed = name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
            }
            guard !rule.isEmpty, rule.count <= 249, allowed, !name.contains("*") else {
                throw APIError.badRequest("topic rule '\(rule)' is not valid: a topic name, or a prefix ending in '*' (letters, digits, '.', '_', '-')")
            }
        }
        return TopicACL(rules: rules)
    }

    /// Why `topic` is refused, or nil when a rule allows it.
    func refusal(_ topic: String, tenant: String) -> String? {
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
