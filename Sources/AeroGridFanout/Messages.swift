public import AeroGridCore
import AeroGridRuntime

/// The stream's server messages (docs/protocol.md), as bytes.
public enum Messages {
    /// `"app":…,"grid":…,"epoch":E,"version":V,"rows":[[key,{cells}|null],…]}`: a delta
    /// without its head, shared by every caught-up subscription of a tick.
    static func deltaBody(
        feed: GridFeed, source: GridState, changes: [GridKey: Set<String>?], filter: SubscriptionFilter,
        epoch: Int64, version: UInt64
    ) -> [UInt8] {
        let keys = changes.keys.sorted()
        let current = source.rows(feed.grid, keys: keys).rows
        var json = JSONWriter(capacity: 64 + keys.count * 48)
        json.raw("\"app\":")
        json.string(feed.app)
        json.raw(",\"grid\":")
        json.string(feed.grid)
        json.raw(",\"epoch\":")
        json.number(epoch)
        json.raw(",\"version\":")
        json.number(version)
        json.raw(",\"rows\":[")
        for (index, (key, row)) in current.enumerated() {
            if index > 0 { json.raw(",") }
            json.raw("[")
            json.key(key)
            json.raw(",")
            if let row {
                // Only the changed cells (all of a new row), within the client's columns.
                var columns: [String]?
                if case .some(.some(let changed)) = changes[key] {
                    columns = filter.columns.map { $0.filter(changed.contains) } ?? changed.sorted()
                } else {
                    columns = filter.columns
                }
                if let chosen = columns {
                    // A changed column the row no longer has is sent as null.
                    var cells = row
                    for column in chosen where cells[column] == nil { cells[column] = .null }
                    json.row(cells, columns: chosen)
                } else {
                    json.row(row, columns: nil)
                }
            } else {
                json.raw("null")
            }
            json.raw("]")
        }
        json.raw("]}")
        return json.bytes
    }

    static func message(type: StaticString, id: String, body: [UInt8]) -> [UInt8] {
        var json = JSONWriter(capacity: body.count + 40)
        json.raw("{\"type\":\"")
        json.raw(type)
        json.raw("\",\"id\":")
        json.string(id)
        json.raw(",")
        json.raw(body)
        return json.bytes
    }

    /// The whole grid (within the filter) with its version and epoch, read together.
    static func snapshot(id: String, feed: GridFeed, source: GridState, filter: SubscriptionFilter) -> ([UInt8], UInt64)? {
        guard let (grid, epoch) = source.snapshot(feed.grid) else { return nil }
        var json = JSONWriter(capacity: 128 + grid.rows.count * 48)
        json.raw("{\"type\":\"snapshot\",\"id\":")
        json.string(id)
        json.raw(",\"app\":")
        json.string(feed.app)
        json.raw(",\"grid\":")
        json.string(feed.grid)
        json.raw(",\"epoch\":")
        json.number(epoch)
        json.raw(",\"version\":")
        json.number(grid.version)
        json.raw(",\"columns\":")
        var columns = grid.columns
        if columns.isEmpty {
            var seen = Set<String>()
            for row in grid.rows.values { seen.formUnion(row.keys) }
            columns = seen.sorted()
        }
        if let wanted = filter.columns { columns = wanted }
        json.strings(columns)
        json.raw(",\"rows\":[")
        var first = true
        for key in grid.rows.keys.sorted() {
            if let keys = filter.keys, !keys.contains(key) { continue }
            if !first { json.raw(",") }
            first = false
            json.raw("[")
            json.key(key)
            json.raw(",")
            json.row(grid.rows[key]!, columns: filter.columns)
            json.raw("]")
        }
        json.raw("]}")
        return (json.bytes, grid.version)
    }

    public static func error(id: String?, code: String, message: String) -> [UInt8] {
        var json = JSONWriter()
        json.raw("{\"type\":\"error\",")
        if let id {
            json.raw("\"id\":")
            json.string(id)
            json.raw(",")
        }
        json.raw("\"code\":")
        json.string(code)
        json.raw(",\"message\":")
        json.string(message)
        json.raw("}")
        return json.bytes
    }
}
