/// A validated name for a tenant, an app or a grid.
///
/// Names end up in URLs, cgroup paths, Kafka topic names (`<tenant>.<app>.dlq`) and file
/// paths, so they are restricted to what is safe in all of them: 1 to 63 characters of
/// lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit.
public struct ResourceName: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let value: String

    public init(_ value: String, kind: String = "name") throws(AeroGridError) {
        if let problem = Self.problem(with: value) {
            throw AeroGridError(.invalidName, "\(kind) '\(value)' is not valid: \(problem)")
        }
        self.value = value
    }

    public var description: String { value }

    public static func < (lhs: ResourceName, rhs: ResourceName) -> Bool { lhs.value < rhs.value }

    /// Why `value` is not a valid name, or nil when it is.
    public static func problem(with value: String) -> String? {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty else { return "it is empty" }
        guard bytes.count <= 63 else { return "it is \(bytes.count) characters long, the limit is 63" }
        guard isAlphanumeric(bytes[0]) else { return "it must start with a lowercase letter or a digit" }
        for byte in bytes where !(isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")) {
            return "only lowercase letters, digits, '-' and '_' are allowed (found '\(Character(Unicode.Scalar(byte)))')"
        }
        return nil
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

public typealias TenantID = ResourceName
public typealias AppName = ResourceName
