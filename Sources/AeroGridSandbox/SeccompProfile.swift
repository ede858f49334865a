import CSeccomp

/// A seccomp profile in the OCI runtime-spec format (the one Docker, runc and crun read):
///
/// ```json
/// { "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
///   "architectures": ["SCMP_ARCH_X86_64"],
///   "syscalls": [ { "names": ["read", "write"], "action": "SCMP_ACT_ALLOW" },
///                 { "names": ["socket"], "action": "SCMP_ACT_ALLOW",
///                   "args": [ { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" } ] } ],
///   "aerogrid": { "memory": "256M", "cpus": 0.5, "pids": 64, "nofile": 256, "tmpSize": "64M" } }
/// ```
///
/// `aerogrid` is our extension (other runtimes ignore it): the quota defaults for sandboxes
/// started with this profile. Every name, action and operator is checked when the profile
/// is loaded, and a mistake is refused naming the file, the field and the reason.
public struct SeccompProfile: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public var names: [String]
        public var action: Action
        public var args: [ArgumentCondition]
    }

    public struct ArgumentCondition: Sendable, Equatable {
        public init(index: UInt32, value: UInt64, valueTwo: UInt64, op: Operator) {
            self.index = index
            self.value = value
            self.valueTwo = valueTwo
            self.op = op
        }

        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64
        public var op: Operator
    }

    public enum Action: Sendable, Equatable {
        case allow, killProcess, killThread, trap, log
        case errno(Int32)
        case trace(UInt16)

        var libseccompValue: UInt32 {
            switch self {
            case .allow: 0x7fff_0000
            case .killProcess: 0x8000_0000
            case .killThread: 0x0000_0000
            case .trap: 0x0003_0000
            case .log: 0x7ffc_0000
            case .errno(let code): 0x0005_0000 | (UInt32(bitPattern: code) & 0xffff)
            case .trace(let code): 0x7ff0_0000 | UInt32(code)
            }
        }
    }

    public enum Operator: String, Sendable, Equatable, CaseIterable {
        case notEqual = "SCMP_CMP_NE"
        case lessThan = "SCMP_CMP_LT"
        case lessOrEqual = "SCMP_CMP_LE"
        case equal = "SCMP_CMP_EQ"
        case greaterOrEqual = "SCMP_CMP_GE"
        case greaterThan = "SCMP_CMP_GT"
        /// `(arg & value) == valueTwo`: value is the mask, as runc reads it.
        case maskedEqual = "SCMP_CMP_MASKED_EQ"
    }

    public var defaultAction: Action
    public var architectures: [String]
    public var rules: [Rule]
    public var quotaDefaults: QuotaDefaults

    /// Quota defaults carried by a profile (`"aerogrid": {…}`).
    public struct QuotaDefaults: Sendable, Equatable {
        public var memoryBytes: UInt64?
        public var cpus: Double?
        public var pids: Int?
        public var openFiles: Int?
        public var tmpBytes: UInt64?
        public init(memoryBytes: UInt64? = nil, cpus: Double? = nil, pids: Int? = nil, openFiles: Int? = nil, tmpBytes: UInt64? = nil) {
            self.memoryBytes = memoryBytes
            self.cpus = cpus
            self.pids = pids
            self.openFiles = openFiles
            self.tmpBytes = tmpBytes
        }
    }

    /// Loads and checks a profile file.
    public static func load(path: String) throws(SandboxError) -> SeccompProfile {
        let text: String
        do {
            text = try SysFS.read(path)
        } catch {
            throw SandboxError(.profile, "seccomp profile \(path): \(error.message)")
        }
        return try parse(text, source: path)
    }

    /// Parses and checks a profile; `source` names it in errors.
    public static func parse(_ text: String, source: String) throws(SandboxError) -> SeccompProfile {
        let document: JSONValue
        do {
            document = try JSONValue.parse(text)
        } catch {
            throw SandboxError(.profile, "seccomp profile \(source): not valid JSON at line \(error.line), column \(error.column): \(error.reason)")
        }
        var reader = ProfileReader(source: source)
        return try reader.profile(document)
    }
}

/// Turns the JSON into a profile, refusing anything unknown with the field's path.
private struct ProfileReader {
    let source: String

    func fail(_ field: String, _ reason: String) -> SandboxError {
        SandboxError(.profile, "seccomp profile \(source): \(field): \(reason)")
    }

    mutating func profile(_ document: JSONValue) throws(SandboxError) -> SeccompProfile {
        guard case .object(let members) = document else { throw fail("(top level)", "expected an object, found \(document.typeName)") }
        let known: Set = ["defaultAction", "defaultErrnoRet", "architectures", "syscalls", "aerogrid"]
        if let unknown = members.first(where: { !known.contains($0.0) }) {
            throw fail(unknown.0, "unknown field (expected one of defaultAction, defaultErrnoRet, architectures, syscalls, aerogrid)")
        }
        let defaultErrno = try document["defaultErrnoRet"].map { value throws(SandboxError) in try int32(value, "defaultErrnoRet") }
        guard let defaultActionValue = document["defaultAction"] else { throw fail("defaultAction", "missing") }
        let defaultAction = try action(defaultActionValue, errnoRet: defaultErrno, field: "defaultAction")
        let architectures = try strings(document["architectures"] ?? .array([]), "architectures")
        for (index, name) in architectures.enumerated() where Self.architectureTokens[name] == nil {
            throw fail(
                "architectures[\(index)]", "unknown architecture '\(name)' (expected one of \(Self.architectureTokens.keys.sorted().joined(separator: ", ")))")
        }
        guard case .array(let entries)? = document["syscalls"] ?? .array([]) else {
            throw fail("syscalls", "expected an array")
        }
        var rules: [SeccompProfile.Rule] = []
        for (index, entry) in entries.enumerated() {
            rules.append(try rule(entry, field: "syscalls[\(index)]", defaultErrno: defaultErrno))
        }
        return SeccompProfile(
            defaultAction: defaultAction, architectures: architectures, rules: rules,
            quotaDefaults: try quotas(document["aerogrid"]))
    }

    func rule(_ entry: JSONValue, field: String, defaultErrno: Int32?) throws(SandboxError) -> SeccompProfile.Rule {
        guard case .object(let members) = entry else { throw fail(field, "expected an object, found \(entry.typeName)") }
        // Docker's conditional `includes`/`excludes` (by capability, kernel version) are
        // refused, not ignored: ignoring them would allow what they meant to limit.
        let known: Set = ["names", "name", "action", "errnoRet", "args", "comment"]
        if let unknown = members.first(where: { !known.contains($0.0) }) {
            throw fail("\(field).\(unknown.0)", "unsupported field (expected names, action, errnoRet, args, comment)")
        }
        var names = try strings(entry["names"] ?? .array([]), "\(field).names")
        if let single = entry["name"] {
            guard case .string(let name) = single else { throw fail("\(field).name", "expected a string") }
            names.append(name)
        }
        guard !names.isEmpty else { throw fail("\(field).names", "lists no syscall") }
        for (index, name) in names.enumerated() where seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR {
            throw fail("\(field).names[\(index)]", "unknown syscall '\(name)'")
        }
        let errnoRet = try entry["errnoRet"].map { value throws(SandboxError) in try int32(value, "\(field).errnoRet") } ?? defaultErrno
        guard let actionValue = entry["action"] else { throw fail("\(field).action", "missing") }
        let action = try action(actionValue, errnoRet: errnoRet, field: "\(field).action")
        var args: [SeccompProfile.ArgumentCondition] = []
        if let argsValue = entry["args"], argsValue != .null {
            guard case .array(let list) = argsValue else { throw fail("\(field).args", "expected an array") }
            for (index, arg) in list.enumerated() {
                args.append(try condition(arg, field: "\(field).args[\(index)]"))
            }
        }
        return SeccompProfile.Rule(names: names, action: action, args: args)
    }

    func condition(_ value: JSONValue, field: String) throws(SandboxError) -> SeccompProfile.ArgumentCondition {
        guard case .object = value else { throw fail(field, "expected an object") }
        let index = try uint64(value["index"], "\(field).index")
        guard index < 6 else { throw fail("\(field).index", "\(index) is not an argument index (0 to 5)") }
        guard case .string(let opName)? = value["op"] else { throw fail("\(field).op", "missing (expected one of \(Self.operatorList))") }
        guard let op = SeccompProfile.Operator(rawValue: opName) else {
            throw fail("\(field).op", "unknown operator '\(opName)' (expected one of \(Self.operatorList))")
        }
        return SeccompProfile.ArgumentCondition(
            index: UInt32(index), value: try uint64(value["value"], "\(field).value"),
            valueTwo: value["valueTwo"] == nil ? 0 : try uint64(value["valueTwo"], "\(field).valueTwo"), op: op)
    }

    func action(_ value: JSONValue, errnoRet: Int32?, field: String) throws(SandboxError) -> SeccompProfile.Action {
        guard case .string(let name) = value else { throw fail(field, "expected a string, found \(value.typeName)") }
        switch name {
        case "SCMP_ACT_ALLOW": return .allow
        case "SCMP_ACT_KILL_PROCESS": return .killProcess
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return .killThread
        case "SCMP_ACT_TRAP": return .trap
        case "SCMP_ACT_LOG": return .log
        case "SCMP_ACT_ERRNO": return .errno(errnoRet ?? 1)
        case "SCMP_ACT_TRACE": return .trace(UInt16(clamping: errnoRet ?? 0))
        default:
            throw fail(
                field,
                "unknown action '\(name)' (expected one of SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_LOG, SCMP_ACT_TRACE)"
            )
        }
    }

    func quotas(_ value: JSONValue?) throws(SandboxError) -> SeccompProfile.QuotaDefaults {
        guard let value else { return SeccompProfile.QuotaDefaults() }
        guard case .object(let members) = value else { throw fail("aerogrid", "expected an object") }
        var defaults = SeccompProfile.QuotaDefaults()
        for (key, member) in members {
            let field = "aerogrid.\(key)"
            switch key {
            case "memory": defaults.memoryBytes = try size(member, field)
            case "tmpSize": defaults.tmpBytes = try size(member, field)
            case "cpus":
                guard case .number(let cpus) = member else { throw fail(field, "expected a number of cores, such as 0.5") }
                defaults.cpus = cpus
            case "pids": defaults.pids = Int(try uint64(member, field))
            case "nofile": defaults.openFiles = Int(try uint64(member, field))
            default: throw fail(field, "unknown field (expected memory, cpus, pids, nofile, tmpSize)")
            }
        }
        return defaults
    }

    func size(_ value: JSONValue, _ field: String) throws(SandboxError) -> UInt64 {
        guard case .string(let text) = value, let bytes = parseSize(text) else {
            throw fail(field, "expected a size such as \"256M\" or \"1G\"")
        }
        return bytes
    }

    func strings(_ value: JSONValue, _ field: String) throws(SandboxError) -> [String] {
        guard case .array(let list) = value else { throw fail(field, "expected an array of strings, found \(value.typeName)") }
        var result: [String] = []
        for (index, element) in list.enumerated() {
            guard case .string(let text) = element else { throw fail("\(field)[\(index)]", "expected a string, found \(element.typeName)") }
            result.append(text)
        }
        return result
    }

    func int32(_ value: JSONValue, _ field: String) throws(SandboxError) -> Int32 {
        guard case .number(let number) = value, number >= 0, number <= 4095, number == number.rounded() else {
            throw fail(field, "expected an errno number from 0 to 4095")
        }
        return Int32(number)
    }

    func uint64(_ value: JSONValue?, _ field: String) throws(SandboxError) -> UInt64 {
        guard case .number(let number)? = value, number >= 0, number == number.rounded(), number <= 18_446_744_073_709_549_568 else {
            throw fail(field, "expected a whole number of 0 or more")
        }
        return UInt64(number)
    }

    static let operatorList = SeccompProfile.Operator.allCases.map(\.rawValue).joined(separator: ", ")

    static let architectureTokens: [String: UInt32] = [
        "SCMP_ARCH_X86_64": 0xC000_003E, "SCMP_ARCH_X86": 0x4000_0003, "SCMP_ARCH_X32": 0x4000_003E,
        "SCMP_ARCH_AARCH64": 0xC000_00B7, "SCMP_ARCH_ARM": 0x4000_0028,
    ]
}

/// "256M", "1G", "512K" or a plain byte count.
public func parseSize(_ text: String) -> UInt64? {
    let trimmed = text.trimmingWhitespace()
    guard let last = trimmed.last else { return nil }
    let multipliers: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    if let multiplier = multipliers[Character(last.uppercased())] {
        let digits = String(trimmed.dropLast())
        guard let value = UInt64(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
    return UInt64(trimmed)
}
