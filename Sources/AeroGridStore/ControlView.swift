import AeroGridCore
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
    migrator.registerMigration("v6-cluster-nodes") { db in
        try db.execute(
            sql: """
                -- The nodes of the cluster, as each last said hello in the log: where the others
                -- reach it (to fetch a bundle the log no longer holds).
                CREATE TABLE cluster_nodes (node_id TEXT PRIMARY KEY NOT NULL, advertised_url TEXT NOT NULL, seen_at REAL NOT NULL) WITHOUT ROWID;
                -- The secret nodes show each other (from the cluster's first record).
                CREATE TABLE cluster_secret (single INTEGER PRIMARY KEY CHECK (single = 1), secret TEXT NOT NULL);
                """)
    }
    migrator.registerMigration("v7-audit-topic") { db in
        try db.execute(
            sql: """
                -- An entry's id across the cluster: read back from the audit topic, an entry this
                -- node wrote itself is not kept twice.
                ALTER TABLE audit ADD COLUMN entry_id TEXT;
                CREATE UNIQUE INDEX audit_by_entry_id ON audit (entry_id);
                -- How far this node has read the cluster's audit topic, and, when it began after
                -- the topic had dropped older entries, from when its audit is whole.
                CREATE TABLE audit_position (
                    single INTEGER PRIMARY KEY CHECK (single = 1), next_offset INTEGER NOT NULL, complete_since REAL);
                -- Write ids numbered in the order they were applied: the latest 2,000 of the last
                -- day of the writes' own times are kept (a week, unnumbered, kept too many for a
                -- snapshot). Rebuilt from either earlier shape.
                CREATE TABLE control_writes_numbered (
                    seq INTEGER PRIMARY KEY, write_id TEXT NOT NULL UNIQUE, outcome TEXT NOT NULL, at REAL NOT NULL);
                INSERT INTO control_writes_numbered (write_id, outcome, at) SELECT write_id, outcome, at FROM control_writes ORDER BY at, write_id;
                DROP TABLE control_writes;
                ALTER TABLE control_writes_numbered RENAME TO control_writes;
                CREATE INDEX control_writes_by_time ON control_writes (at);
                -- Where the last snapshot the view saw in the log is: when the next one is due.
                ALTER TABLE control_position ADD COLUMN last_snapshot INTEGER;
                """)
    }
    migrator.registerMigration("v8-app-ids") { db in
        // Each app's immutable id: the key of its grids in a cluster's changelog. Apps made
        // before get one derived from what every node's view holds alike.
        try db.execute(sql: "ALTER TABLE apps ADD COLUMN id TEXT")
        let apps = try Row.fetchAll(db, sql: "SELECT a.tenant, a.name, a.created_at, t.id AS tenant_id FROM apps a LEFT JOIN tenants t ON t.name = a.tenant")
        for app in apps {
            let tenantID: String = app["tenant_id"] ?? app["tenant"]
            try db.execute(
                sql: "UPDATE apps SET id = ? WHERE tenant = ? AND name = ?",
                arguments: [AppRecord.derivedID(tenantID: tenantID, name: app["name"], createdAt: app["created_at"]), app["tenant"], app["name"]])
        }
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
    /// How long an applied write's id is remembered, in the writes' own time, and how many
    /// are: enough for a caller's retry, few enough that a snapshot stays small.
    static let writeIDsKept: (seconds: TimeInterval, count: Int64) = (24 * 3600, 2_000)

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
                } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                    guard let refused = refusal(StoreConflict.constraint(error.message ?? "\(error)")) else { throw error }
                    outcome = refused
                } catch {
                    guard let refused = refusal(error) else { throw error }
                    outcome = refused
                }
                let seconds = time.timeIntervalSince1970
                try db.execute(sql: "INSERT INTO control_writes (write_id, outcome, at) VALUES (?, ?, ?)", arguments: [writeID, outcome, seconds])
                // Numbered max + 1 on every node alike, so every node forgets the same ones.
                try db.execute(
                    sql: "DELETE FROM control_writes WHERE at < ? OR seq <= ?",
                    arguments: [seconds - Self.writeIDsKept.seconds, db.lastInsertedRowID - Self.writeIDsKept.count])
                result = .applied(outcome: outcome)
            }
            if let position { try Self.setPosition(db, position) }
            return result
        }
    }

    private static func setPosition(_ db: Database, _ position: LogPosition) throws {
        try db.execute(
            sql: """
                INSERT INTO control_position (single, cluster_id, next_offset) VALUES (1, ?, ?)
                ON CONFLICT(single) DO UPDATE SET cluster_id = excluded.cluster_id, next_offset = excluded.next_offset
                """,
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

    /// Notes where the last snapshot the view saw in the log is.
    public func noteSnapshot(at offset: Int64) async throws {
        try await database.write { db in try db.execute(sql: "UPDATE control_position SET last_snapshot = ? WHERE single = 1", arguments: [offset]) }
    }

    /// Where the last snapshot the view saw in the log is, if it saw one.
    public func lastSnapshot() async throws -> Int64? {
        try await database.read { db in try Int64.fetchOne(db, sql: "SELECT last_snapshot FROM control_position WHERE single = 1") }
    }

    /// The cluster's nodes, by id, with the URL each advertised.
    public func clusterNodes() async throws -> [(id: String, url: String)] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT node_id, advertised_url FROM cluster_nodes ORDER BY node_id").map { ($0["node_id"], $0["advertised_url"]) }
        }
    }

    /// The secret the cluster's nodes show each other; nil outside a cluster.
    public func peerSecret() async throws -> String? {
        try await database.read { db in try String.fetchOne(db, sql: "SELECT secret FROM cluster_secret WHERE single = 1") }
    }

    /// The outcome of the write `writeID`, if this view applied it.
    public func outcome(ofWrite writeID: String) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(db, sql: "SELECT outcome FROM control_writes WHERE write_id = ?", arguments: [writeID])
        }
    }
}

/// The control plane's tables as a snapshot carries them: every row, every column as
/// stored, apart from what is each node's own (a token's last use, the audit, checkpoints).
public struct ControlTables: Codable, Sendable, Equatable {
    public struct Tenant: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var createdAt: Double
        public var quota: String
        public var topics: String?
        public var hostUid: Int64?
    }

    public struct RetiredName: Codable, Sendable, Equatable {
        public var name: String
        public var tenantId: String?
        public var hostUid: Int64?
        public var retiredAt: Double
    }

    public struct Token: Codable, Sendable, Equatable {
        public var id: String
        public var tenant: String?
        public var name: String
        public var role: String
        public var secretSha256: String
        public var createdAt: Double
        public var revokedAt: Double?
    }

    public struct App: Codable, Sendable, Equatable {
        /// Nil in a snapshot written before apps had ids: derived on reading.
        public var id: String?
        public var tenant: String
        public var name: String
        public var version: Int64
        public var bundleDigest: String
        public var entrypoint: String
        public var runtime: String
        public var desiredState: String
        public var config: String
        public var quota: String
        public var createdAt: Double
        public var updatedAt: Double
    }

    public struct Write: Codable, Sendable, Equatable {
        public var seq: Int64
        public var writeId: String
        public var outcome: String
        public var at: Double
    }

    public var tenants: [Tenant] = []
    public var retiredNames: [RetiredName] = []
    public var tokens: [Token] = []
    public var apps: [App] = []
    public var writes: [Write] = []

    public struct Node: Codable, Sendable, Equatable {
        public var nodeId: String
        public var advertisedUrl: String
        public var seenAt: Double
    }

    public var nodes: [Node] = []
    /// The secret the cluster's nodes show each other.
    public var peerSecret: String?

    public init() {}

    private enum CodingKeys: String, CodingKey { case tenants, retiredNames, tokens, apps, writes, nodes, peerSecret }

    /// A table a snapshot does not name is empty (an earlier format had fewer).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tenants = try container.decodeIfPresent([Tenant].self, forKey: .tenants) ?? []
        retiredNames = try container.decodeIfPresent([RetiredName].self, forKey: .retiredNames) ?? []
        tokens = try container.decodeIfPresent([Token].self, forKey: .tokens) ?? []
        apps = try container.decodeIfPresent([App].self, forKey: .apps) ?? []
        writes = try container.decodeIfPresent([Write].self, forKey: .writes) ?? []
        nodes = try container.decodeIfPresent([Node].self, forKey: .nodes) ?? []
        peerSecret = try container.decodeIfPresent(String.self, forKey: .peerSecret)
    }

    /// Rows in all.
    public var count: Int { tenants.count + retiredNames.count + tokens.count + apps.count + writes.count + nodes.count }
}

extension Store {
    /// The control plane's tables and the view's position, read in one transaction.
    public func controlTables() async throws -> (tables: ControlTables, position: LogPosition?) {
        try await database.read { db in
            var tables = ControlTables()
            tables.tenants = try Row.fetchAll(db, sql: "SELECT * FROM tenants ORDER BY id").map {
                .init(id: $0["id"], name: $0["name"], createdAt: $0["created_at"], quota: $0["quota"], topics: $0["topics"], hostUid: $0["host_uid"])
            }
            tables.retiredNames = try Row.fetchAll(db, sql: "SELECT * FROM retired_tenant_names ORDER BY name").map {
                .init(name: $0["name"], tenantId: $0["tenant_id"], hostUid: $0["host_uid"], retiredAt: $0["retired_at"])
            }
            tables.tokens = try Row.fetchAll(db, sql: "SELECT * FROM tokens ORDER BY id").map {
                .init(
                    id: $0["id"], tenant: $0["tenant"], name: $0["name"], role: $0["role"], secretSha256: $0["secret_sha256"],
                    createdAt: $0["created_at"], revokedAt: $0["revoked_at"])
            }
            tables.apps = try Row.fetchAll(db, sql: "SELECT * FROM apps ORDER BY tenant, name").map {
                .init(
                    id: $0["id"], tenant: $0["tenant"], name: $0["name"], version: $0["version"], bundleDigest: $0["bundle_digest"],
                    entrypoint: $0["entrypoint"],
                    runtime: $0["runtime"], desiredState: $0["desired_state"], config: $0["config"], quota: $0["quota"], createdAt: $0["created_at"],
                    updatedAt: $0["updated_at"])
            }
            tables.writes = try Row.fetchAll(db, sql: "SELECT * FROM control_writes ORDER BY seq").map {
                .init(seq: $0["seq"], writeId: $0["write_id"], outcome: $0["outcome"], at: $0["at"])
            }
            tables.nodes = try Row.fetchAll(db, sql: "SELECT * FROM cluster_nodes ORDER BY node_id").map {
                .init(nodeId: $0["node_id"], advertisedUrl: $0["advertised_url"], seenAt: $0["seen_at"])
            }
            tables.peerSecret = try String.fetchOne(db, sql: "SELECT secret FROM cluster_secret WHERE single = 1")
            let position = try Row.fetchOne(db, sql: "SELECT cluster_id, next_offset FROM control_position WHERE single = 1").map {
                LogPosition(clusterID: $0["cluster_id"], nextOffset: $0["next_offset"])
            }
            return (tables, position)
        }
    }

    /// Makes the control plane's tables those of `tables`, at `position`, in one
    /// transaction. The checkpoints of apps it does not have go too; each remaining token
    /// keeps this node's note of its last use.
    public func replaceControlTables(with tables: ControlTables, position: LogPosition) async throws {
        try await database.write { db in
            // An app deleted and made again while this view was away is another app: the old
            // one's checkpoint goes, as following the log would have removed it.
            let localCreated = Dictionary(
                try Row.fetchAll(db, sql: "SELECT tenant, name, created_at FROM apps").map {
                    (AppID(tenant: $0["tenant"], name: $0["name"]).description, $0["created_at"] as Double)
                }, uniquingKeysWith: { first, _ in first })
            let lastUse = Dictionary(
                try Row.fetchAll(db, sql: "SELECT id, last_used_at FROM tokens WHERE last_used_at IS NOT NULL").map {
                    ($0["id"] as String, $0["last_used_at"] as Double)
                }, uniquingKeysWith: { first, _ in first })
            for table in ["apps", "tokens", "tenants", "retired_tenant_names", "control_writes", "cluster_nodes", "cluster_secret"] {
                try db.execute(sql: "DELETE FROM \(table)")
            }
            for node in tables.nodes {
                try db.execute(
                    sql: "INSERT INTO cluster_nodes (node_id, advertised_url, seen_at) VALUES (?, ?, ?)",
                    arguments: [node.nodeId, node.advertisedUrl, node.seenAt])
            }
            if let secret = tables.peerSecret {
                try db.execute(sql: "INSERT INTO cluster_secret (single, secret) VALUES (1, ?)", arguments: [secret])
            }
            for tenant in tables.tenants {
                try db.execute(
                    sql: "INSERT INTO tenants (id, name, created_at, quota, topics, host_uid) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [tenant.id, tenant.name, tenant.createdAt, tenant.quota, tenant.topics, tenant.hostUid])
            }
            for retired in tables.retiredNames {
                try db.execute(
                    sql: "INSERT INTO retired_tenant_names (name, tenant_id, host_uid, retired_at) VALUES (?, ?, ?, ?)",
                    arguments: [retired.name, retired.tenantId, retired.hostUid, retired.retiredAt])
            }
            for token in tables.tokens {
                try db.execute(
                    sql: """
                        INSERT INTO tokens (id, tenant, name, role, secret_sha256, created_at, revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [token.id, token.tenant, token.name, token.role, token.secretSha256, token.createdAt, token.revokedAt, lastUse[token.id]])
            }
            for app in tables.apps {
                try db.execute(
                    sql: """
                        INSERT INTO apps (id, tenant, name, version, bundle_digest, entrypoint, runtime, desired_state, config, quota, created_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        app.id
                            ?? AppRecord.derivedID(
                                tenantID: tables.tenants.first { $0.name == app.tenant }?.id ?? app.tenant, name: app.name, createdAt: app.createdAt),
                        app.tenant, app.name, app.version, app.bundleDigest, app.entrypoint, app.runtime, app.desiredState, app.config, app.quota,
                        app.createdAt, app.updatedAt,
                    ])
            }
            for write in tables.writes {
                try db.execute(
                    sql: "INSERT INTO control_writes (seq, write_id, outcome, at) VALUES (?, ?, ?, ?)",
                    arguments: [write.seq, write.writeId, write.outcome, write.at])
            }
            // Checkpoints of apps the snapshot does not have: they were deleted meanwhile.
            let kept = Set(
                tables.apps.filter { app in localCreated[AppID(tenant: app.tenant, name: app.name).description].map { $0 == app.createdAt } ?? true }
                    .map { AppID(tenant: $0.tenant, name: $0.name).description })
            for table in ["grid_rows", "grid_versions", "source_offsets", "app_epochs"] {
                for app in try String.fetchAll(db, sql: "SELECT DISTINCT app FROM \(table)") where !kept.contains(app) {
                    try db.execute(sql: "DELETE FROM \(table) WHERE app = ?", arguments: [app])
                }
            }
            try Self.setPosition(db, position)
        }
    }
}
