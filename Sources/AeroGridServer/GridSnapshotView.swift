import AeroGridCore
import Foundation

/// A grid as the API shows it.
struct GridSnapshotView {
    let version: UInt64
    let epoch: Int64
    let columns: [String]
    let rows: [GridKey: GridRow]

    /// `key,<columns…>`, then one line per row in key order; RFC 4180 quoting. Our users
    /// open these in Excel, which runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a
    /// carriage return as a formula: such text (an app writes it, a record carries it) gets
    /// a leading `'`, which Excel shows as text. Numbers are written as numbers.
    var csv: String {
        func field(_ text: String) -> String {
            text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        func text(_ value: String) -> String {
            guard let first = value.unicodeScalars.first, ["=", "+", "-", "@", "\t", "\r"].contains(first) else { return value }
            return "'" + value
        }
        func cell(_ value: GridValue?) -> String {
            switch value {
            case .string(let string)?: text(string)
            case let other?: other.description
            case nil: ""
            }
        }
        func keyText(_ key: GridKey) -> String {
            switch key {
            case .string(let string): text(string)
            case .int(let number): String(number)
            }
        }
        var lines = [(["key"] + columns.map(text)).map(field).joined(separator: ",")]
        for key in rows.keys.sorted() {
            let row = rows[key]!
            lines.append(([keyText(key)] + columns.map { cell(row[$0]) }).map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}
