/// Writes JSON straight into bytes. The stream's messages use it because they are built for
/// every tick of every grid (no dictionaries, no Foundation on the way); everything that
/// writes grid cells uses it because it keeps a cell's type: `4.0` stays `4.0`, where
/// Foundation's JSONSerialization writes `4` and the cell would come back as an integer
/// (after a restart, in the REST API).
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    public mutating func raw(_ other: [UInt8]) {
        bytes.append(contentsOf: other)
    }

    public mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [92, 92])
            case 0x0A: bytes.append(contentsOf: [92, 110])
            case 0x0D: bytes.append(contentsOf: [92, 114])
            case 0x09: bytes.append(contentsOf: [92, 116])
            case ..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [92, 117, 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// How many bytes `string(text)` writes: what a text takes in a message, escapes
    /// included (a control character is six bytes there).
    public static func length(of text: String) -> Int {
        var count = 2
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09: count += 2
            case ..<0x20: count += 6
            default: count += 1
            }
        }
        return count
    }

    public mutating func number(_ value: Int64) {
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func number(_ value: UInt64) {
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func key(_ key: GridKey) {
        switch key {
        case .string(let text): string(text)
        case .int(let number): self.number(number)
        }
    }

    public mutating func value(_ value: GridValue) {
        switch value {
        case .string(let text): string(text)
        case .int(let number): self.number(number)
        // Swift's shortest round-trip form: "4.0", "0.1", "1e-07" (all valid JSON numbers).
        case .double(let number): bytes.append(contentsOf: (number.isFinite ? String(number) : "null").utf8)
        case .bool(let flag): raw(flag ? "true" : "false")
        case .null: raw("null")
        }
    }

    /// A row as an object of the given columns (all when nil) it has.
    public mutating func row(_ row: GridRow, columns: [String]?) {
        bytes.append(UInt8(ascii: "{"))
        var first = true
        func cell(_ column: String, _ value: GridValue) {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            string(column)
            bytes.append(UInt8(ascii: ":"))
            self.value(value)
        }
        if let columns {
            for column in columns { if let value = row[column] { cell(column, value) } }
        } else {
            for column in row.keys.sorted() { cell(column, row[column]!) }
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// Rows as one object keyed by the rows' keys as text, in key order: `{"EUR/USD":{…},…}`.
    public mutating func rowsByKey(_ rows: [GridKey: GridRow]) {
        bytes.append(UInt8(ascii: "{"))
        for (index, key) in rows.keys.sorted().enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(key.description)
            bytes.append(UInt8(ascii: ":"))
            row(rows[key]!, columns: nil)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func strings(_ values: [String]) {
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(value)
        }
        bytes.append(UInt8(ascii: "]"))
    }
}
