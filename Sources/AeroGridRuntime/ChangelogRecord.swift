public import AeroGridCore
public import AeroGridStore
import Foundation

/// One record of a cluster's grid changelog (`_aerogrid.<cluster>.changelog`, docs/cluster.md
/// "The changelog"): keyed by the app's immutable id, in the partition of the app's slot.
/// The value is JSON, `"v":1`.
///
/// - `claim`: a node takes the app. Its offset is the **generation**: every later record of
///   the app counts only if it carries the generation of the latest claim before it.
/// - `batch`: one applied batch's grid changes, and the source offsets after it.
/// - `snapshot`: every row of the app's grids; the grids start over from it.
/// - `declare`: the grids' columns, as the app's hello declared them.
/// - `release`: the owner has written everything and gives the app up.
///
/// A batch or snapshot larger than one record (`ChangelogRecord.partBytes`) is split into
/// parts, `part` 0 to `parts - 1`; only the last carries the offsets and versions, and the
/// parts are applied together when it arrives.
public enum ChangelogRecord: Sendable, Equatable {
    case claim(Claim)
    case changes(Changes)
    case declare(Declare)
    case release(Stamp)

    /// The format this node writes and the newest it reads.
    public static let version = 1
    /// At most this many bytes a record's value: under Kafka's default 1 MB message limit.
    public static let partBytes = 900 * 1024

    public struct Claim: Sendable, Equatable {
        public var app: String
        public var node: String
    }

    /// Who wrote a record and where it falls in the writer's run: the generation (the offset
    /// of the claim it writes under) and a sequence number from 1.
    public struct Stamp: Sendable, Equatable {
        public var app: String
        public var generation: Int64
        public var sequence: UInt64
    }

    public struct Changes: Sendable, Equatable {
        public var stamp: Stamp
        /// A snapshot replaces the grids; a batch changes them.
        public var snapshot: Bool
        public var part: Int
        public var parts: Int
        public var updates: [Update]
        /// On the last part: the source offsets after it, the versions of the grids it
        /// changed (a snapshot: of every grid) and the records it applied (a snapshot: all
        /// records applied so far).
        public var end: End?
    }

    public struct Update: Sendable, Equatable {
        public var grid: String
        public var key: GridKey
        public var row: GridRow?
    }

    public struct End: Sendable, Equatable {
        public var offsets: [SourcePartition: Int64]
        public var versions: [String: UInt64]
        public var records: Int
    }

    public struct Declare: Sendable, Equatable {
        public var stamp: Stamp
        public var columns: [String: [String]]
    }

    public var app: String {
        switch self {
        case .claim(let claim): claim.app
        case .changes(let changes): changes.stamp.app
        case .declare(let declare): declare.stamp.app
        case .release(let stamp): stamp.app
        }
    }

    var stamp: Stamp? {
        switch self {
        case .claim: nil
        case .changes(let changes): changes.stamp
        case .declare(let declare): declare.stamp
        case .release(let stamp): stamp
        }
    }

    // MARK: Writing

    public static func encodeClaim(app: String, node: String) -> [UInt8] {
        var json = envelope("claim", app: app)
        json.raw(",\"node\":")
        json.string(node)
        json.raw("}")
        return json.bytes
    }

    static func encodeRelease(_ stamp: Stamp) -> [UInt8] {
        var json = envelope("release", stamp)
        json.raw("}")
        return json.bytes
    }

    static func encodeDeclare(_ stamp: Stamp, columns: [String: [String]]) -> [UInt8] {
        var json = envelope("declare", stamp)
        json.raw(",\"columns\":{")
        for (index, grid) in columns.keys.sorted().enumerated() {
            if index > 0 { json.raw(",") }
            json.string(grid)
            json.raw(":")
            json.strings(columns[grid]!)
        }
        json.raw("}}")
        return json.bytes
    }

    /// A batch or snapshot as the values of one or more records, each at most `partBytes`;
    /// `firstSequence` is the first part's, the next parts' follow. Throws when one update,
    /// or the end, does not fit in a record on its own.
    static func encodeChanges(
        app: String, generation: Int64, firstSequence: UInt64, snapshot: Bool, updates: [Update], end: End,
        partBytes: Int = partBytes
    ) throws(ChangelogTooLarge) -> [[UInt8]] {
        // What every part carries besides its updates, with room for its numbers.
        let overhead = 256 + app.utf8.count
        var tail = JSONWriter()
        tail.raw(",\"offsets\":[")
        for (index, source) in end.offsets.keys.sorted().enumerated() {
            if index > 0 { tail.raw(",") }
            tail.raw("[")
            tail.string(source.topic)
            tail.raw(",")
            tail.number(Int64(source.partition))
            tail.raw(",")
            tail.number(end.offsets[source]!)
            tail.raw("]")
        }
        tail.raw("],\"versions\":{")
        for (index, grid) in end.versions.keys.sorted().enumerated() {
            if index > 0 { tail.raw(",") }
            tail.string(grid)
            tail.raw(":")
            tail.number(end.versions[grid]!)
        }
        tail.raw("},\"records\":")
        tail.number(Int64(end.records))
        guard overhead + tail.bytes.count <= partBytes else {
            throw ChangelogTooLarge("its source offsets and grid versions take \(tail.bytes.count) bytes; a changelog record holds \(partBytes)")
        }
        // Updates packed greedily into parts.
        var parts: [[UInt8]] = []
        var current = JSONWriter()
        for update in updates {
            var one = JSONWriter()
            one.raw("[")
            one.string(update.grid)
            one.raw(",")
            one.key(update.key)
            one.raw(",")
            if let row = update.row { one.row(row, columns: nil) } else { one.raw("null") }
            one.raw("]")
            guard overhead + one.bytes.count <= partBytes else {
                throw ChangelogTooLarge("a row of grid '\(update.grid)' takes \(one.bytes.count) bytes; a changelog record holds \(partBytes)")
            }
            if !current.bytes.isEmpty && overhead + current.bytes.count + 1 + one.bytes.count > partBytes {
                parts.append(current.bytes)
                current = JSONWriter()
            }
            if !current.bytes.isEmpty { current.raw(",") }
            current.raw(one.bytes)
        }
        // The end goes with the last updates when they fit together, else in a part of its own.
        var lastUpdates = current.bytes
        if overhead + lastUpdates.count + tail.bytes.count > partBytes {
            parts.append(lastUpdates)
            lastUpdates = []
        }
        parts.append(lastUpdates)
        return parts.enumerated().map { index, updatesJSON in
            var json = envelope(
                snapshot ? "snapshot" : "batch", Stamp(app: app, generation: generation, sequence: firstSequence + UInt64(index)))
            json.raw(",\"part\":")
            json.number(Int64(index))
            json.raw(",\"parts\":")
            json.number(Int64(parts.count))
            json.raw(",\"updates\":[")
            json.raw(updatesJSON)
            json.raw("]")
            if index == parts.count - 1 { json.raw(tail.bytes) }
            json.raw("}")
            return json.bytes
        }
    }

    private static func envelope(_ kind: StaticString, app: String) -> JSONWriter {
        var json = JSONWriter()
        json.raw("{\"v\":1,\"kind\":\"")
        json.raw(kind)
        json.raw("\",\"app\":")
        json.string(app)
        return json
    }

    private static func envelope(_ kind: StaticString, _ stamp: Stamp) -> JSONWriter {
        var json = envelope(kind, app: stamp.app)
        json.raw(",\"gen\":")
        json.number(stamp.generation)
        json.raw(",\"seq\":")
        json.number(stamp.sequence)
        return json
    }

    // MARK: Reading

    /// Reads a record's value. A record of a newer format is `NewerFormat` (the app stops
    /// and says so); one that does not read is `ChangelogUnreadable`.
    public static func decode(_ value: [UInt8]) throws -> ChangelogRecord {
        guard let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any] else {
            throw ChangelogUnreadable("not a JSON object")
        }
        guard let version = (object["v"] as? NSNumber)?.intValue else { throw ChangelogUnreadable("no format version") }
        guard version <= Self.version else { throw NewerFormat(version: version) }
        guard let kind = object["kind"] as? String, let app = object["app"] as? String else {
            throw ChangelogUnreadable("no kind or app")
        }
        if kind == "claim" {
            guard let node = object["node"] as? String else { throw ChangelogUnreadable("a claim without its node") }
            return .claim(Claim(app: app, node: node))
        }
        guard let generation = (object["gen"] as? NSNumber)?.int64Value, let sequence = (object["seq"] as? NSNumber)?.uint64Value else {
            throw ChangelogUnreadable("a \(kind) without gen and seq")
        }
        let stamp = Stamp(app: app, generation: generation, sequence: sequence)
        switch kind {
        case "release":
            return .release(stamp)
        case "declare":
            guard let columns = object["columns"] as? [String: [String]] else { throw ChangelogUnreadable("a declare without columns") }
            return .declare(Declare(stamp: stamp, columns: columns))
        case "batch", "snapshot":
            return .changes(try changes(object, stamp: stamp, snapshot: kind == "snapshot"))
        default:
            throw ChangelogUnreadable("kind '\(kind.cut(toBytes: 32))' is not one this format has")
        }
    }

    private static func changes(_ object: [String: Any], stamp: Stamp, snapshot: Bool) throws -> Changes {
        guard let part = (object["part"] as? NSNumber)?.intValue, let parts = (object["parts"] as? NSNumber)?.intValue, part >= 0, part < parts,
            let rawUpdates = object["updates"] as? [[Any]]
        else { throw ChangelogUnreadable("a \(snapshot ? "snapshot" : "batch") without part, parts and updates") }
        var updates: [Update] = []
        updates.reserveCapacity(rawUpdates.count)
        for raw in rawUpdates {
            guard raw.count == 3, let grid = raw[0] as? String else { throw ChangelogUnreadable("an update is not [grid, key, row]") }
            let key: GridKey
            switch raw[1] {
            case let text as String: key = .string(text)
            case let number as NSNumber: key = .int(number.int64Value)
            default: throw ChangelogUnreadable("an update's key is not a string or an integer")
            }
            var row: GridRow?
            if let cells = raw[2] as? [String: Any] {
                var decoded: GridRow = [:]
                for (column, value) in cells {
                    guard let cell = GridValue(json: value) else { throw ChangelogUnreadable("a cell of grid '\(grid)' does not read") }
                    decoded[column] = cell
                }
                row = decoded
            } else if !(raw[2] is NSNull) {
                throw ChangelogUnreadable("an update's row is not an object or null")
            }
            updates.append(Update(grid: grid, key: key, row: row))
        }
        var end: End?
        if part == parts - 1 {
            guard let rawOffsets = object["offsets"] as? [[Any]], let rawVersions = object["versions"] as? [String: NSNumber],
                let records = (object["records"] as? NSNumber)?.intValue
            else { throw ChangelogUnreadable("the last part has no offsets, versions and records") }
            var offsets: [SourcePartition: Int64] = [:]
            for raw in rawOffsets {
                guard raw.count == 3, let topic = raw[0] as? String, let partition = (raw[1] as? NSNumber)?.int32Value,
                    let offset = (raw[2] as? NSNumber)?.int64Value
                else { throw ChangelogUnreadable("an offset is not [topic, partition, offset]") }
                offsets[SourcePartition(topic: topic, partition: partition)] = offset
            }
            end = End(offsets: offsets, versions: rawVersions.mapValues(\.uint64Value), records: records)
        }
        return Changes(stamp: stamp, snapshot: snapshot, part: part, parts: parts, updates: updates, end: end)
    }
}

/// A changelog record written in a newer format than this node reads.
public struct NewerFormat: Error, CustomStringConvertible {
    public let version: Int
    public var description: String {
        "the changelog holds a record of format \(version); this node reads up to \(ChangelogRecord.version): upgrade it"
    }
}

public struct ChangelogUnreadable: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = "a changelog record does not read: \(description)" }
}

/// What does not fit in changelog records.
public struct ChangelogTooLarge: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
