import AeroGridCluster
import AeroGridCore
import AeroGridStore
import Foundation

/// Snapshots of the control plane in the config log: the whole of a view's tables in parts
/// small enough for any Kafka (below its default 1 MB message limit), and the search for
/// the latest whole one, from which a node whose position the log no longer holds (a new
/// node, one stopped for long) is seeded.
enum ControlSnapshots {
    /// A part's tables are at most this many bytes of JSON.
    static let partBytes = 512 << 10
    /// What a node holds of snapshot parts while it looks for a whole snapshot.
    static let searchBytes = 256 << 20
    /// Records read per step back from the log's end.
    static let searchWindow: Int64 = 5_000

    /// `tables` in parts of at most `partBytes` each (a row larger than that alone in one).
    static func parts(of tables: ControlTables, limit: Int = partBytes) -> [ControlTables] {
        var first = ControlTables()
        first.peerSecret = tables.peerSecret
        var parts = [first]
        var size = 0
        let encoder = JSONEncoder()
        func add<Row: Encodable>(_ row: Row, to keyPath: WritableKeyPath<ControlTables, [Row]>) {
            let bytes = (try? encoder.encode(row).count) ?? 0
            if size + bytes > limit, parts[parts.count - 1].count > 0 {
                parts.append(ControlTables())
                size = 0
            }
            parts[parts.count - 1][keyPath: keyPath].append(row)
            size += bytes + 1
        }
        for row in tables.tenants { add(row, to: \.tenants) }
        for row in tables.retiredNames { add(row, to: \.retiredNames) }
        for row in tables.tokens { add(row, to: \.tokens) }
        for row in tables.apps { add(row, to: \.apps) }
        for row in tables.writes { add(row, to: \.writes) }
        for row in tables.nodes { add(row, to: \.nodes) }
        return parts
    }

    /// The parts put together again.
    static func joined(_ parts: [ControlTables]) -> ControlTables {
        var tables = ControlTables()
        for part in parts {
            tables.tenants += part.tenants
            tables.retiredNames += part.retiredNames
            tables.tokens += part.tokens
            tables.apps += part.apps
            tables.writes += part.writes
            tables.nodes += part.nodes
            tables.peerSecret = tables.peerSecret ?? part.peerSecret
        }
        return tables
    }

    /// The records of a snapshot of `tables` as of `covers` in cluster `clusterID`.
    static func records(of tables: ControlTables, clusterID: String, covers: Int64) -> [ControlRecord] {
        let parts = parts(of: tables)
        let id = RandomID.make(prefix: "snap_")
        return parts.enumerated().map { index, part in
            ControlRecord(
                writeID: "\(id)/\(index)", clusterID: clusterID, at: Date(),
                change: .snapshot(.init(snapshotId: id, clusterId: clusterID, covers: covers, part: index, parts: parts.count, tables: part)))
        }
    }

    /// A whole snapshot found in the log.
    struct Found {
        let clusterID: String
        let covers: Int64
        let tables: ControlTables
        /// The offset of the part that made it whole.
        let offset: Int64
    }

    /// The latest whole snapshot whose `covers` the log still holds (at or above `low`),
    /// read back from `end` a window at a time; nil when there is none.
    static func latest(in reader: ConfigLogReader, low: Int64, end: Int64) async throws -> Found? {
        var parts: [String: [Int: ControlChange.SnapshotPart]] = [:]
        var held = 0
        var windowEnd = end
        while windowEnd > low {
            let windowStart = max(low, windowEnd - searchWindow)
            try await reader.seek(to: windowStart)
            var found: Found?
            var quiet = 0
            while reader.position < windowEnd, quiet < 50 {
                let records = try await reader.next(timeout: .milliseconds(100))
                quiet = records.isEmpty ? quiet + 1 : 0
                for message in records where message.offset < windowEnd {
                    guard let record = try? ControlRecord(decoding: message.value ?? []), case .snapshot(let part) = record.change,
                        part.parts > 0, part.parts <= 100_000, (0..<part.parts).contains(part.part)
                    else { continue }
                    held += message.value?.count ?? 0
                    guard held <= searchBytes else { throw ClusterLogHalt("the snapshots in the log are larger than \(searchBytes >> 20) MiB") }
                    parts[part.snapshotId, default: [:]][part.part] = part
                    if let whole = parts[part.snapshotId], whole.count == part.parts, part.covers >= low,
                        found.map({ $0.covers < part.covers }) ?? true
                    {
                        found = Found(
                            clusterID: part.clusterId, covers: part.covers, tables: joined(whole.keys.sorted().compactMap { whole[$0]?.tables }),
                            offset: message.offset)
                    }
                }
            }
            if let found { return found }
            windowEnd = windowStart
        }
        return nil
    }
}
