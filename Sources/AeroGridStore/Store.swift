public import AeroGridCore
import Foundation
import GRDB

/// The supervisor's database: SQLite (the system's libsqlite3, through GRDB) in WAL mode,
/// one file in the data directory. This part holds grid checkpoints; the control plane adds
/// its tables through further migrations.
public final class Store: Sendable {
    let database: DatabasePool

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        database = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-grid-checkpoints") { db in
            // Rows of each app's grids as of its last checkpoint. Keys keep their JSON type:
            // "s:7" is the string "7", "i:7" the integer 7.
            try db.execute(
                sql: """
                    CREATE TABLE grid_rows (
                        app TEXT NOT NULL, grid TEXT NOT NULL, key TEXT NOT NULL, row TEXT NOT NULL,
                        PRIMARY KEY (app, grid, key)) WITHOUT ROWID;
                    CREATE TABLE grid_versions (
                        app TEXT NOT NULL, grid TEXT NOT NULL, version INTEGER NOT NULL,
                        PRIMARY KEY (app, grid)) WITHOUT ROWID;
                    -- The next offset to process per source partition: the records up to it are
                    -- in grid_rows. Written in the same transaction as the rows.
                    CREATE TABLE source_offsets (
                        app TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                        PRIMARY KEY (app, topic, partition)) WITHOUT ROWID;
                    -- Bumped each time an app's state is restored from its checkpoint, so clients
                    -- can tell a rolled-back version from a new one.
                    CREATE TABLE app_epochs (app TEXT PRIMARY KEY NOT NULL, epoch INTEGER NOT NULL);
                    """)
        }
        registerControlPlaneMigrations(&migrator)
        registerControlViewMigrations(&migrator)
        return migrator
    }

    /// The app's last checkpoint (empty when it never had one).
    public func loadCheckpoint(app: String) async throws -> GridCheckpoint {
        try await database.read { db in
            var checkpoint = GridCheckpoint()
            let rows = try Row.fetchCursor(db, sql: "SELECT grid, key, row FROM grid_rows WHERE app = ?", arguments: [app])
            while let row = try rows.next() {
                let grid: String = row["grid"]
                guard let key = GridKey(storageText: row["key"]), let cells = GridRow(storageJSON: row["row"]) else { continue }
                checkpoint.grids[grid, default: [:]][key] = cells
            }
            for row in try Row.fetchAll(db, sql: "SELECT grid, version FROM grid_versions WHERE app = ?", arguments: [app]) {
                checkpoint.versions[row["grid"]] = UInt64(row["version"] as Int64)
            }
            for row in try Row.fetchAll(db, sql: "SELECT topic, partition, next_offset FROM source_offsets WHERE app = ?", arguments: [app]) {
                checkpoint.offsets[SourcePartition(topic: row["topic"], partition: row["partition"])] = row["next_offset"]
            }
            checkpoint.epoch = try Int64.fetchOne(db, sql: "SELECT epoch FROM app_epochs WHERE app = ?", arguments: [app]) ?? 0
            return checkpoint
        }
    }

    /// Writes what changed since the last checkpoint — rows, versions and the source
    /// offsets they correspond to — in one transaction: after a crash the store holds
    /// either all of it or none of it.
    public func saveCheckpoint(app: String, _ delta: CheckpointDelta) async throws {
        try await database.write { db in
            for (grid, changes) in delta.rows {
                for (key, row) in changes {
                    if let row {
                        try db.execute(
                            sql: "INSERT OR REPLACE INTO grid_rows (app, grid, key, row) VALUES (?, ?, ?, ?)",
                            arguments: [app, grid, key.storageText, row.storageJSON])
                    } else {
                        try db.execute(sql: "DELETE FROM grid_rows WHERE app = ? AND grid = ? AND key = ?", arguments: [app, grid, key.storageText])
                    }
                }
            }
            for (grid, version) in delta.versions {
                try db.execute(sql: "INSERT OR REPLACE INTO grid_versions (app, grid, version) VALUES (?, ?, ?)", arguments: [app, grid, Int64(version)])
            }
            for (source, offset) in delta.offsets {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO source_offsets (app, topic, partition, next_offset) VALUES (?, ?, ?, ?)",
                    arguments: [app, source.topic, source.partition, offset])
            }
        }
    }

    /// Starts a new epoch for the app (its state is about to be restored) and returns it.
    public func nextEpoch(app: String) async throws -> Int64 {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO app_epochs (app, epoch) VALUES (?, 1) ON CONFLICT(app) DO UPDATE SET epoch = epoch + 1", arguments: [app])
            return try Int64.fetchOne(db, sql: "SELECT epoch FROM app_epochs WHERE app = ?", arguments: [app]) ?? 1
        }
    }

    /// Forgets the app's grids and offsets (a reset, or the app deleted).
    public func deleteCheckpoint(app: String) async throws {
        try await database.write { db in
            for table in ["grid_rows", "grid_versions", "source_offsets"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE app = ?", arguments: [app])
            }
        }
    }
}

/// A source partition, without depending on the Kafka module.
public struct SourcePartition: Hashable, Sendable, Comparable {
    public let topic: String
    public let partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (lhs: SourcePartition, rhs: SourcePartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}

/// Grids and offsets as of a checkpoint.
public struct GridCheckpoint: Sendable, Equatable {
    public var grids: [String: [GridKey: GridRow]] = [:]
    public var versions: [String: UInt64] = [:]
    public var offsets: [SourcePartition: Int64] = [:]
    public var epoch: Int64 = 0

    public init() {}
}

/// What changed since the last checkpoint; a nil row is a deleted one.
public struct CheckpointDelta: Sendable {
    public var rows: [String: [GridKey: GridRow?]] = [:]
    public var versions: [String: UInt64] = [:]
    public var offsets: [SourcePartition: Int64] = [:]

    public init() {}

    public var isEmpty: Bool { rows.isEmpty && versions.isEmpty && offsets.isEmpty }
}

extension GridKey {
    var storageText: String {
        switch self {
        case .string(let text): "s:" + text
        case .int(let number): "i:" + String(number)
        }
    }

    init?(storageText: String) {
        let body = String(storageText.dropFirst(2))
        if storageText.hasPrefix("s:") {
            self = .string(body)
        } else if storageText.hasPrefix("i:"), let number = Int64(body) {
            self = .int(number)
        } else {
            return nil
        }
    }
}

extension Dictionary where Key == String, Value == GridValue {
    /// The row as a JSON object; a double stays a double (`4.0`) when it is read back.
    var storageJSON: String {
        var json = JSONWriter(capacity: 16 + count * 24)
        json.row(self, columns: nil)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    /// Read with JSONSerialization, whose tagged numbers keep a cell's JSON type (1 and 1.0).
    init?(storageJSON: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(storageJSON.utf8)) as? [String: Any] else { return nil }
        var row: [String: GridValue] = [:]
        for (column, value) in object {
            guard let cell = GridValue(json: value) else { return nil }
            row[column] = cell
        }
        self = row
    }
}
