import Foundation

/// A grid row's key: a string or an integer (`"7"` and `7` are different keys).
public enum GridKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    case string(String)
    case int(Int64)

    public var description: String {
        switch self {
        case .string(let text): text
        case .int(let number): String(number)
        }
    }

    /// Integers sort before strings, each in natural order.
    public static func < (lhs: GridKey, rhs: GridKey) -> Bool {
        switch (lhs, rhs) {
        case (.int(let a), .int(let b)): a < b
        case (.string(let a), .string(let b)): a < b
        case (.int, .string): true
        case (.string, .int): false
        }
    }
}

/// A cell value: what JSON allows in a grid row.
public enum GridValue: Hashable, Sendable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null

    public var description: String {
        switch self {
        case .string(let text): text
        case .int(let number): String(number)
        case .double(let number): String(number)
        case .bool(let flag): flag ? "true" : "false"
        case .null: ""
        }
    }

    /// From a JSONSerialization value; nil for anything a cell cannot hold.
    public init?(json: Any) {
        switch json {
        case is NSNull: self = .null
        case let text as String: self = .string(text)
        case let number as NSNumber:
            // JSONSerialization tags what it parsed: "c" a boolean, "d" a number with a
            // fraction or exponent, an integer type otherwise.
            switch String(cString: number.objCType) {
            case "c", "B": self = .bool(number.boolValue)
            case "d", "f": self = .double(number.doubleValue)
            default: self = .int(number.int64Value)
            }
        default: return nil
        }
    }
}

/// A grid row: column → value. A column that is absent is an empty cell.
public typealias GridRow = [String: GridValue]
