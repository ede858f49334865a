import AeroGridCore
public import Foundation
import GRDB

/// The control plane's tables: tenants, their tokens (only hashes), their apps with the
/// desired state, and the audit log, which outlives what it describes.
func registerControlPlaneMigrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("v2-control-plane") { db in
        try db.execute(
            sql: """
                CREATE TABLE tenants (name TEXT PRIMARY KEY NOT NULL, created_at REAL NOT NULL);
                -- tenant is NULL for operator tokens. secret_sha256 is the hex SHA-256 of the secret.
                CREATE TABLE tokens (
                    id TEXT PRIMARY KEY NOT NULL, tenant TEXT REFERENCES tenants(name) ON DELETE CASCADE,
                    name TEXT NOT NULL, role TEXT NOT NULL, secret_sha256 TEXT NOT NULL UNIQUE,
                    created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL);
                CREATE TABLE apps (
                    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE, name TEXT NOT NULL,
                    version INTEGER NOT NULL, bundle_digest TEXT NOT NULL, entrypoint TEXT NOT NULL,
                    runtime TEXT NOT NULL, desired_state TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}',
                    created_at REAL NOT NULL, updated_at REAL NOT NULL,
                    PRIMARY KEY (tenant, name)) WITHOUT ROWID;
                -- No foreign keys: the audit keeps what was deleted.
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, tenant TEXT, actor TEXT NOT NULL,
                    action TEXT NOT NULL, target TEXT NOT NULL, source TEXT NOT NULL, outcome TEXT NOT NULL);
                CREATE INDEX audit_by_tenant ON audit (tenant, id);
                """)
    }
    migrator.registerMigration("v3-quotas-and-acls") { db in
        // JSON objects of the values set (absent: the server's default), and the topic ACL
        // as a JSON array of rules (NULL: the default, the tenant's own prefix).
        try db.execute(
            sql: """
                ALTER TABLE tenants ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
                ALTER TABLE tenants ADD COLUMN topics TEXT;
                ALTER TABLE apps ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
                """)
    }
    migrator.registerMigration("v4-tenant-ids") { db in
        // A tenant's immutable id (sessions, feeds and the audit are keyed on it), its own host
        // uid for its apps (assigned by the server from its configured range), and the names
        // of deleted tenants, which are never given out again.
        try db.execute(
            sql: """
                ALTER TABLE tenants ADD COLUMN id TEXT;
                UPDATE tenants SET id = 'ten_' || lower(hex(randomblob(8)));
                CREATE UNIQUE INDEX tenants_by_id ON tenants (id);
                ALTER TABLE tenants ADD COLUMN host_uid INTEGER;
                CREATE UNIQUE INDEX tenants_by_host_uid ON tenants (host_uid);
                CREATE TABLE retired_tenant_names (
                    name TEXT PRIMARY KEY NOT NULL, tenant_id TEXT, host_uid INTEGER, retired_at REAL NOT NULL) WITHOUT ROWID;
                INSERT OR IGNORE INTO retired_tenant_names (name, retired_at)
                    SELECT tenant, MAX(time) FROM audit
                    WHERE action = 'tenant.delete' AND tenant IS NOT NULL AND tenant NOT IN (SELECT name FROM tenants) GROUP BY tenant;
                ALTER TABLE audit ADD COLUMN tenant_id TEXT;
                -- An entry belongs to the tenant that had the name when it was written; entries
                -- from before the current tenant was created were a previous owner's.
                UPDATE audit SET tenant_id = (SELECT t.id FROM tenants t WHERE t.name = audit.tenant AND audit.time >= t.created_at);
                CREATE INDEX audit_by_tenant_id ON audit (tenant_id, id);
                """)
    }
}

public struct TenantRecord: Sendable, Equatable {
    /// Immutable: `ten_` and 16 hex digits.
    public let id: String
    public let name: String
    public let createdAt: Date
    public let apps: Int
    /// The quota values set for it, a JSON object (`{}`: the defaults).
    public let quota: String
    /// Its topic ACL, a JSON array of rules; nil: the default.
    public let topics: String?
    /// The host uid (and gid) its apps' sandboxes map to: its own, shared with no other tenant.
    public let hostUID: UInt32?

    /// A new tenant's id, chosen by whoever creates it.
    public static func newID() -> String { RandomID.make(prefix: "ten_") }

    init(row: Row) {
        id = row["id"]
        name = row["name"]
        createdAt = Date(timeIntervalSince1970: row["created_at"])
        apps = row["apps"]
        quota = row["quota"]
        topics = row["topics"]
        hostUID = (row["host_uid"] as Int64?).map { UInt32(truncatingIfNeeded: $0) }
    }
}

public struct TokenRecord: Sendable, Equatable {
    public let id: String
    public let tenant: String?
    /// The tenant's immutable id (nil for operator tokens).
    public let tenantID: String?
    public let name: String
    public let role: String
    public let createdAt: Date
    public let lastUsedAt: Date?
    public let revokedAt: Date?

    init(row: Row) {
        id = row["id"]
        tenant = row["tenant"]
        tenantID = row["tenant_id"]
        name = row["name"]
        role = row["role"]
        createdAt = Date(timeIntervalSince1970: row["created_at"])
        lastUsedAt = (row["last_used_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        revokedAt = (row["revoked_at"] as Double?).map(Date.init(timeIntervalSince1970:))
    }
}

public struct AppRecord: Sendable, Equatable {
    /// Immutable: `app_` and 16 hex digits. A deleted app's name, deployed again, makes an
    /// app with another id, so nothing kept under the old one (its changelog) is inherited.
    public let id: String
    public let tenant: String
    public let name: String
    public var version: Int
    public var bundleDigest: String
    public var entrypoint: String
    public var runtime: String
    /// `running` or `stopped`: what the supervisor drives the app toward.
    public var desiredState: String
    /// The app's own quota settings, a JSON object (`{}`: the defaults).
    public var quota: String
    public let createdAt: Date
    public var updatedAt: Date

    /// A new app's id, chosen by whoever deploys it.
    public static func newID() -> String { RandomID.make(prefix: "app_") }

    /// The id of an app whose deploy named none (written before apps had ids): the same on
    /// every node, from what every node's view holds alike.
    public static func derivedID(tenantID: String, name: String, createdAt: Double) -> String {
        // FNV-1a, 64 bits: stable across processes and platforms, unlike Swift's Hasher.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(tenantID)/\(name)/\(createdAt)".utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "app_" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    init(row: Row) {
        id = row["id"] ?? ""
        quota = row["quota"]
        tenant = row["tenant"]
        name = row["name"]
        version = row["version"]
        bundleDigest = row["bundle_digest"]
        entrypoint = row["entrypoint"]
        runtime = row["runtime"]
        desiredState = row["desired_state"]
        createdAt = Date(timeIntervalSince1970: row["created_at"])
        updatedAt = Date(timeIntervalSince1970: row["updated_at"])
    }
}

public struct AuditEntry: Sendable, Equatable {
    public let id: Int64
    public let time: Date
    public let tenant: String?
    public let tenantID: String?
    public let actor: String
    public let action: String
    public let target: String
    public let source: String
    public let outcome: String
}

/// A write refused by a rule the store checks in the same transaction, told apart from
/// other store errors.
public enum StoreConflict: Error, Sendable, Equatable {
    /// A tenant of that name exists.
    case tenantExists
    /// A deleted tenant had that name: names are never given out again.
    case nameRetired
    /// Every host uid of the configured range is taken.
    case noHostUID(ClosedRange<UInt32>)
    /// The tenant has `count` apps, its quota.
    case tooManyApps(count: Int, limit: Int)
    /// A token with that id or secret exists.
    case tokenExists
    /// The write breaks a rule of the tables themselves (a unique id, a reference): a
    /// record no node writes, refused the same way everywhere.
    case constraint(String)
}

let tenantColumns = """
    SELECT t.id, t.name, t.created_at, t.quota, t.topics, t.host_uid, (SELECT COUNT(*) FROM apps a WHERE a.tenant = t.name) AS apps
    FROM tenants t
    """

/// The control plane's writes, inside one transaction of `Store.apply`: each decides from
/// its inputs and the tables alone (the caller chooses ids and times), so stores given the
/// same writes in the same order end the same — what nodes applying one log need.
public struct StoreTransaction {
    let db: Database

    // MARK: Reads, as the transaction sees them

    public func tenant(_ name: String) throws -> TenantRecord? {
        try Row.fetchOne(db, sql: tenantColumns + " WHERE t.name = ?", arguments: [name]).map(TenantRecord.init(row:))
    }

    public func apps(tenant: String) throws -> [AppRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM apps WHERE tenant = ? ORDER BY name", arguments: [tenant]).map(AppRecord.init(row:))
    }

    public func tokenExists(secretSHA256: String) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM tokens WHERE secret_sha256 = ?", arguments: [secretSHA256]) ?? false
    }

    // MARK: Tenants

    /// Creates the tenant with its first token and a host uid of its own from `hostUIDs`
    /// (never one a tenant had before). A name in use or once used is refused.
    @discardableResult
    public func createTenant(
        _ name: String, id: String, at time: Date, firstToken: Store.NewTokenRow, topics: String? = nil,
        hostUIDs: ClosedRange<UInt32> = 900_000_000...900_099_999
    ) throws -> TenantRecord {
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM tenants WHERE name = ?", arguments: [name]) == true { throw StoreConflict.tenantExists }
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM retired_tenant_names WHERE name = ?", arguments: [name]) == true {
            throw StoreConflict.nameRetired
        }
        let uid = try nextHostUID(in: hostUIDs)
        try db.execute(
            sql: "INSERT INTO tenants (id, name, created_at, topics, host_uid) VALUES (?, ?, ?, ?, ?)",
            arguments: [id, name, time.timeIntervalSince1970, topics, Int64(uid)])
        try createToken(firstToken)
        return try tenant(name)!
    }

    /// The lowest uid of the range above every uid a tenant has or had.
    private func nextHostUID(in range: ClosedRange<UInt32>) throws -> UInt32 {
        let highest = try Int64.fetchOne(
            db,
            sql: """
                SELECT MAX(uid) FROM (SELECT host_uid AS uid FROM tenants WHERE host_uid BETWEEN ? AND ?
                                      UNION ALL SELECT host_uid FROM retired_tenant_names WHERE host_uid BETWEEN ? AND ?)
                """, arguments: [Int64(range.lowerBound), Int64(range.upperBound), Int64(range.lowerBound), Int64(range.upperBound)])
        guard let highest else { return range.lowerBound }
        guard highest < Int64(range.upperBound) else { throw StoreConflict.noHostUID(range) }
        return UInt32(highest + 1)
    }

    /// Gives every tenant without a host uid one of its own (tenants made before uids were
    /// kept, or under another range); returns how many were given one.
    @discardableResult
    public func assignHostUIDs(in range: ClosedRange<UInt32>) throws -> Int {
        let names = try String.fetchAll(
            db, sql: "SELECT name FROM tenants WHERE host_uid IS NULL OR host_uid NOT BETWEEN ? AND ? ORDER BY created_at, name",
            arguments: [Int64(range.lowerBound), Int64(range.upperBound)])
        for name in names {
            try db.execute(sql: "UPDATE tenants SET host_uid = ? WHERE name = ?", arguments: [Int64(try nextHostUID(in: range)), name])
        }
        return names.count
    }

    /// False when there is no such tenant.
    public func setTenantQuota(_ name: String, json: String) throws -> Bool {
        try db.execute(sql: "UPDATE tenants SET quota = ? WHERE name = ?", arguments: [json, name])
        return db.changesCount > 0
    }

    /// False when there is no such tenant.
    public func setTenantTopics(_ name: String, json: String) throws -> Bool {
        try db.execute(sql: "UPDATE tenants SET topics = ? WHERE name = ?", arguments: [json, name])
        return db.changesCount > 0
    }

    /// Removes the tenant with its tokens and apps (their checkpoints included). Its name
    /// and host uid are retired at `time`: never given to another tenant. False when there
    /// is no such tenant.
    public func deleteTenant(_ name: String, at time: Date) throws -> Bool {
        try db.execute(
            sql: """
                INSERT OR REPLACE INTO retired_tenant_names (name, tenant_id, host_uid, retired_at)
                SELECT name, id, host_uid, ? FROM tenants WHERE name = ?
                """, arguments: [time.timeIntervalSince1970, name])
        guard db.changesCount > 0 else { return false }
        for table in ["grid_rows", "grid_versions", "source_offsets", "app_epochs"] {
            try db.execute(sql: "DELETE FROM \(table) WHERE app LIKE ? ESCAPE '\\'", arguments: [Self.likePrefix(name + "/")])
        }
        try db.execute(sql: "DELETE FROM apps WHERE tenant = ?", arguments: [name])
        try db.execute(sql: "DELETE FROM tokens WHERE tenant = ?", arguments: [name])
        try db.execute(sql: "DELETE FROM tenants WHERE name = ?", arguments: [name])
        return true
    }

    private static func likePrefix(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_") + "%"
    }

    // MARK: The cluster

    /// Keeps the cluster's peer secret; the first one given stays.
    public func setPeerSecret(_ secret: String) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO cluster_secret (single, secret) VALUES (1, ?)", arguments: [secret])
    }

    /// Notes where node `id` is reached, as of `time`.
    public func noteNode(_ id: String, advertisedURL: String, at time: Date) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO cluster_nodes (node_id, advertised_url, seen_at) VALUES (?, ?, ?)",
            arguments: [id, advertisedURL, time.timeIntervalSince1970])
    }

    // MARK: Tokens

    /// Refused when a token has its id or secret (a secret given twice, such as an operator
    /// token from the environment of two nodes, is one token).
    public func createToken(_ token: Store.NewTokenRow) throws {
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM tokens WHERE id = ? OR secret_sha256 = ?", arguments: [token.id, token.secretSHA256]) == true {
            throw StoreConflict.tokenExists
        }
        try db.execute(
            sql: """
                INSERT INTO tokens (id, tenant, name, role, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [token.id, token.tenant, token.name, token.role, token.secretSHA256, token.createdAt.timeIntervalSince1970])
    }

    /// Revokes the tenant's token at `time` (a token revoked before keeps its first time);
    /// false when the tenant has no such token.
    public func revokeToken(id: String, tenant: String, at time: Date) throws -> Bool {
        try db.execute(
            sql: "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND tenant = ?",
            arguments: [time.timeIntervalSince1970, id, tenant])
        return db.changesCount > 0
    }

    // MARK: Apps

    /// Creates the app (version 1, stopped) or makes this bundle its next version; returns
    /// the app and whether it is new. A new app is refused when the tenant has `maxApps`.
    public func deployApp(
        tenant: String, name: String, id: String? = nil, bundleDigest: String, entrypoint: String, runtime: String, maxApps: Int = .max,
        at time: Date
    ) throws -> (AppRecord, created: Bool) {
        let now = time.timeIntervalSince1970
        let existing = try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name])
        if existing == nil {
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM apps WHERE tenant = ?", arguments: [tenant]) ?? 0
            guard count < maxApps else { throw StoreConflict.tooManyApps(count: count, limit: maxApps) }
            let tenantID = try String.fetchOne(db, sql: "SELECT id FROM tenants WHERE name = ?", arguments: [tenant]) ?? tenant
            try db.execute(
                sql: """
                    INSERT INTO apps (id, tenant, name, version, bundle_digest, entrypoint, runtime, desired_state, created_at, updated_at)
                    VALUES (?, ?, ?, 1, ?, ?, ?, 'stopped', ?, ?)
                    """,
                arguments: [
                    id ?? AppRecord.derivedID(tenantID: tenantID, name: name, createdAt: now), tenant, name, bundleDigest, entrypoint, runtime, now, now,
                ])
        } else {
            try db.execute(
                sql: """
                    UPDATE apps SET version = version + 1, bundle_digest = ?, entrypoint = ?, runtime = ?, updated_at = ?
                    WHERE tenant = ? AND name = ?
                    """, arguments: [bundleDigest, entrypoint, runtime, now, tenant, name])
        }
        let row = try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name])!
        return (AppRecord(row: row), existing == nil)
    }

    /// Sets the app's desired state and quota; nil when there is no such app.
    public func updateApp(tenant: String, name: String, desiredState: String, quota: String, at time: Date) throws -> AppRecord? {
        try db.execute(
            sql: "UPDATE apps SET desired_state = ?, quota = ?, updated_at = ? WHERE tenant = ? AND name = ?",
            arguments: [desiredState, quota, time.timeIntervalSince1970, tenant, name])
        return try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name]).map(AppRecord.init(row:))
    }

    /// Removes the app and its checkpoint; false when there is no such app.
    public func deleteApp(tenant: String, name: String) throws -> Bool {
        // The checkpoint's key: the app's `AppID` description.
        let key = AppID(tenant: tenant, name: name).description
        for table in ["grid_rows", "grid_versions", "source_offsets", "app_epochs"] {
            try db.execute(sql: "DELETE FROM \(table) WHERE app = ?", arguments: [key])
        }
        try db.execute(sql: "DELETE FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name])
        return db.changesCount > 0
    }
}

extension Store {
    // MARK: Reads

    public func tenants() async throws -> [TenantRecord] {
        try await database.read { db in
            try Row.fetchAll(db, sql: tenantColumns + " ORDER BY t.name").map(TenantRecord.init(row:))
        }
    }

    public func tenant(_ name: String) async throws -> TenantRecord? {
        try await database.read { db in try StoreTransaction(db: db).tenant(name) }
    }

    /// A token to insert: its secret is already hashed, its id and time chosen by the caller.
    public struct NewTokenRow: Sendable, Equatable {
        public let id: String
        public let tenant: String?
        public let name: String
        public let role: String
        public let secretSHA256: String
        public let createdAt: Date

        public init(id: String, tenant: String?, name: String, role: String, secretSHA256: String, createdAt: Date) {
            self.id = id
            self.tenant = tenant
            self.name = name
            self.role = role
            self.secretSHA256 = secretSHA256
            self.createdAt = createdAt
        }
    }

    /// The live (not revoked) token with this secret hash, its last use noted (at most once
    /// a minute, so reads do not turn into writes). The last use is this node's own: it is
    /// not a control-plane write.
    public func authenticate(secretSHA256: String) async throws -> TokenRecord? {
        let found = try await database.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT k.*, t.id AS tenant_id FROM tokens k LEFT JOIN tenants t ON t.name = k.tenant
                    WHERE k.secret_sha256 = ? AND k.revoked_at IS NULL
                    """, arguments: [secretSHA256]
            ).map(TokenRecord.init(row:))
        }
        guard let found else { return nil }
        let now = Date()
        if found.lastUsedAt.map({ now.timeIntervalSince($0) > 60 }) ?? true {
            try await database.write { db in
                try db.execute(sql: "UPDATE tokens SET last_used_at = ? WHERE id = ?", arguments: [now.timeIntervalSince1970, found.id])
            }
        }
        return found
    }

    /// Whether any operator token exists (the first start makes one).
    public func hasOperatorToken() async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM tokens WHERE tenant IS NULL AND revoked_at IS NULL LIMIT 1") ?? false
        }
    }

    public func tokens(tenant: String) async throws -> [TokenRecord] {
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT k.*, t.id AS tenant_id FROM tokens k JOIN tenants t ON t.name = k.tenant WHERE k.tenant = ? ORDER BY k.created_at, k.id
                    """, arguments: [tenant]
            ).map(TokenRecord.init(row:))
        }
    }

    public func apps(tenant: String? = nil) async throws -> [AppRecord] {
        try await database.read { db in
            if let tenant { return try StoreTransaction(db: db).apps(tenant: tenant) }
            return try Row.fetchAll(db, sql: "SELECT * FROM apps ORDER BY tenant, name").map(AppRecord.init(row:))
        }
    }

    public func app(tenant: String, name: String) async throws -> AppRecord? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name]).map(AppRecord.init(row:))
        }
    }

    /// The bundles some app still uses, as `<tenant id>/<digest>`.
    public func bundlesInUse() async throws -> Set<String> {
        try await database.read { db in
            Set(try String.fetchAll(db, sql: "SELECT DISTINCT t.id || '/' || a.bundle_digest FROM apps a JOIN tenants t ON t.name = a.tenant"))
        }
    }

    // MARK: Audit

    /// One entry, at `time`: it belongs to the tenant with id `tenantID` (its name kept for reading).
    public func audit(
        tenant: String?, tenantID: String?, actor: String, action: String, target: String, source: String,
        outcome: String, at time: Date, entryID: String? = nil
    ) async throws {
        try await database.write { db in
            try Self.insertAudit(
                db,
                AuditRecord(
                    entryID: entryID, time: time, tenant: tenant, tenantID: tenantID, actor: actor, action: action, target: target, source: source,
                    outcome: outcome))
        }
    }

    /// An entry without a local id: as the cluster's audit topic carries it.
    public struct AuditRecord: Sendable, Equatable {
        public var entryID: String?
        public var time: Date
        public var tenant: String?
        public var tenantID: String?
        public var actor: String
        public var action: String
        public var target: String
        public var source: String
        public var outcome: String

        public init(
            entryID: String?, time: Date, tenant: String?, tenantID: String?, actor: String, action: String, target: String, source: String,
            outcome: String
        ) {
            self.entryID = entryID
            self.time = time
            self.tenant = tenant
            self.tenantID = tenantID
            self.actor = actor
            self.action = action
            self.target = target
            self.source = source
            self.outcome = outcome
        }
    }

    /// An entry already kept (by its id) is not kept again.
    private static func insertAudit(_ db: Database, _ entry: AuditRecord) throws {
        try db.execute(
            sql: """
                INSERT OR IGNORE INTO audit (entry_id, time, tenant, tenant_id, actor, action, target, source, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                entry.entryID, entry.time.timeIntervalSince1970, entry.tenant, entry.tenantID, entry.actor, entry.action, entry.target, entry.source,
                entry.outcome,
            ])
    }

    /// Entries read from the cluster's audit topic, with how far it has been read, in one
    /// transaction; `completeSince` only when this node's reading of it begins.
    public func appendAudit(_ entries: [AuditRecord], nextOffset: Int64, completeSince: Date?) async throws {
        try await database.write { db in
            for entry in entries { try Self.insertAudit(db, entry) }
            try db.execute(
                sql: """
                    INSERT INTO audit_position (single, next_offset, complete_since) VALUES (1, ?, ?)
                    ON CONFLICT(single) DO UPDATE SET next_offset = excluded.next_offset
                    """, arguments: [nextOffset, completeSince?.timeIntervalSince1970])
        }
    }

    /// How far this node has read the cluster's audit topic, and from when its audit is
    /// whole (nil: from the start); nil when it never read it.
    public func auditPosition() async throws -> (nextOffset: Int64, completeSince: Date?)? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT next_offset, complete_since FROM audit_position WHERE single = 1").map {
                ($0["next_offset"], ($0["complete_since"] as Double?).map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    /// Newest first: the tenant's (by its id), or all tenants' when `tenantID` is nil.
    public func auditEntries(tenantID: String?, limit: Int) async throws -> [AuditEntry] {
        try await database.read { db in
            let rows =
                if let tenantID {
                    try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE tenant_id = ? ORDER BY id DESC LIMIT ?", arguments: [tenantID, limit])
                } else {
                    try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?", arguments: [limit])
                }
            return rows.map {
                AuditEntry(
                    id: $0["id"], time: Date(timeIntervalSince1970: $0["time"]), tenant: $0["tenant"], tenantID: $0["tenant_id"],
                    actor: $0["actor"], action: $0["action"], target: $0["target"], source: $0["source"], outcome: $0["outcome"])
            }
        }
    }

    /// Answers when the database does (readiness).
    public func ping() async throws {
        _ = try await database.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }
}
