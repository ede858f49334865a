import AeroGridCore
public import AeroGridSandbox
import AeroGridStore
import Foundation

/// What one tenant may use in all: apps, memory and CPU of its running apps, client
/// connections.
public struct TenantQuota: Sendable, Equatable {
    public var maxApps: Int
    public var memoryBytes: UInt64
    public var cpus: Double
    public var maxConnections: Int

    public static let defaults = TenantQuota(maxApps: 20, memoryBytes: 4 << 30, cpus: 2, maxConnections: 200)
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
    static let tenantKeys = ["max_apps", "memory_bytes", "cpus", "max_connections"]
    static let appKeys = ["memory_bytes", "cpus", "pids", "grid_rows"]

    static func decode(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func encode(_ object: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
    }

    static func tenant(_ text: String) -> TenantQuota {
        let set = decode(text)
        var quota = TenantQuota.defaults
        if let value = set["max_apps"] as? Int { quota.maxApps = value }
        if let value = set["memory_bytes"] as? Int { quota.memoryBytes = UInt64(value) }
        if let value = set["cpus"] as? Double { quota.cpus = value }
        if let value = set["max_connections"] as? Int { quota.maxConnections = value }
        return quota
    }

    static func app(_ text: String, defaults: AppQuota) -> AppQuota {
        let set = decode(text)
        var quota = defaults
        if let value = set["memory_bytes"] as? Int { quota.memoryBytes = UInt64(value) }
        if let value = set["cpus"] as? Double { quota.cpus = value }
        if let value = set["pids"] as? Int { quota.pids = value }
        if let value = set["grid_rows"] as? Int { quota.gridRows = value }
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
                guard let number = value as? Double, number > 0, number <= 1024 else {
                    throw APIError.badRequest("cpus must be a number of cores above 0, such as 0.5")
                }
                set[key] = number
            default:
                guard let number = value as? Int, number > 0 else {
                    throw APIError.badRequest("\(key) must be a positive integer")
                }
                if key == "memory_bytes" && number < 16 << 20 {
                    throw APIError.badRequest("memory_bytes must be at least 16 MiB (16777216); Python alone needs about 10 MiB")
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

/// How an app is to run: its quota and its tenant's topic ACL.
public struct AppPlan: Sendable {
    public let quota: AppQuota
    public let topics: TopicACL
}

extension UInt64 {
    /// Bytes as the refusals show them: "256 MiB".
    var mebibytes: String { "\(self >> 20) MiB" }
}
