public import Foundation
import GRDB

/// The control plane's tables as a view of a log of writes (docs/cluster.md): each write
/// is applied once, in one transaction with what it changes, its outcome kept under its
/// write id (a write sent twice is answered, not applied twice), and, on a node of a
/// cluster, the log position it was read at.
func registerControlViewMigrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("v5-control-view") { db in
        try db.execute(
            sql: """
                -- What each write came to, by the id its writer gave it; kept for a week of the
                -- writes' own times, so a retry of the same write is answered, not applied again.
                CREATE TABLE control_writes (write_id TEXT PRIMARY KEY NOT NULL, outcome TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
                CREATE INDEX control_writes_by_time ON control_writes (at);
                -- One row on a node of a cluster: the cluster whose log the view follows and the
                -- offset of the next record to read.
                CREATE TABLE control_position (
                    single INTEGER PRIMARY KEY CHECK (single = 1), cluster_id TEXT NOT NULL, next_offset INTEGER NOT NULL);
                """)
    }
}

/// Where a view stands in a cluster's log: the cluster (the id its log's first record
/// gave it) and the offset of the next record to read.
public struct LogPosition: Sendable, Equatable {
    public var clusterID: String
    public var nextOffset: Int64

    public init(clusterID: String, nextOffset: Int64) {
        self.clusterID = clusterID
        self.nextOffset = nextOffset
    }
}

/// What applying a write came to.
public enum ApplyResult: Sendable, Equatable {
    /// Applied now, with its outcome.
    case applied(outcome: String)
    /// A write of this id was applied before (with this outcome): not applied again.
    case repeated(outcome: String)

    public var outcome: String {
        switch self {
        case .applied(let outcome), .repeated(let outcome): outcome
        }
    }
}

extension Store {
    /// How long an applied write's id is remembered, in the writes' own time.
    static let writeIDsKept: TimeInterval = 7 * 24 * 3600

    /// Applies one write in one transaction: `body` changes the tables and returns the
    /// outcome; if it throws an error `refusal` describes (a precondition the write failed),
    /// its changes are undone and the description is the outcome. Either way the outcome is
    /// kept under `writeID`, with `position` when the write came from a cluster's log. Any
    /// other error undoes everything and is thrown: the write is not applied.
    public func apply(
        writeID: String, at time: Date, position: LogPosition?, refusal: @escaping @Sendable (any Error) -> String?,
        _ body: @escaping @Sendable (StoreTransaction) throws -> String
    ) async throws -> ApplyResult {
        try await database.write { db in
            let result: ApplyResult
            if let outcome = try String.fetchOne(db, sql: "SELECT outcome FROM control_writes WHERE write_id = ?", arguments: [writeID]) {
                result = .repeated(outcome: outcome)
            } else {
                var outcome = ""
                do {
                    try db.inSavepoint {
                        outcome = try body(StoreTransaction(db: db))
                        return .commit
                    }
                } catch {
                    guard let refused = refusal(error) else { throw error }
                    outcome = refused
                }
                let seconds = time.timeIntervalSince1970
                try db.execute(sql: "DELETE FROM control_writes WHERE at < ?", arguments: [seconds - Self.writeIDsKept])
                try db.execute(sql: "INSERT INTO control_writes (write_id, outcome, at) VALUES (?, ?, ?)", arguments: [writeID, outcome, seconds])
                result = .applied(outcome: outcome)
            }
            if let position { try Self.setPosition(db, position) }
            return result
        }
    }

    private static func setPosition(_ db: Database, _ position: LogPosition) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO control_position (single, cluster_id, next_offset) VALUES (1, ?, ?)",
            arguments: [position.clusterID, position.nextOffset])
    }

    /// Moves the view's position past a record that changes nothing (one this node skips).
    public func advance(to position: LogPosition) async throws {
        try await database.write { db in try Self.setPosition(db, position) }
    }

    /// Where the view stands in its cluster's log; nil for a view that never followed one.
    public func position() async throws -> LogPosition? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT cluster_id, next_offset FROM control_position WHERE single = 1").map {
                LogPosition(clusterID: $0["cluster_id"], nextOffset: $0["next_offset"])
            }
        }
    }

    /// The outcome of the write `writeID`, if this view applied it.
    public func outcome(ofWrite writeID: String) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(db, sql: "SELECT outcome FROM control_writes WHERE write_id = ?", arguments: [writeID])
        }
    }
}
