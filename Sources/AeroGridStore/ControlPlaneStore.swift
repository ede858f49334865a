public import Foundation
import GRDB

/// The control plane's tables: tenants, their tokens (only hashes), their apps with the
/// desired state, and the audit log, which outlives what it describes.
func registerControlPlaneMigrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("v2-control-plane") { db in
        try db.execute(sql: """
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
        try db.execute(sql: """
            ALTER TABLE tenants ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
            ALTER TABLE tenants ADD COLUMN topics TEXT;
            ALTER TABLE apps ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
            """)
    }
}

public struct TenantRecord: Sendable, Equatable {
    public let name: String
    public let createdAt: Date
    public let apps: Int
    /// The quota values set for it, a JSON object (`{}`: the defaults).
    public let quota: String
    /// Its topic ACL, a JSON array of rules; nil: the default.
    public let topics: String?
}

public struct TokenRecord: Sendable, Equatable {
    public let id: String
    public let tenant: String?
    public let name: String
    public let role: String
    public let createdAt: Date
    public let lastUsedAt: Date?
    public let revokedAt: Date?

    init(row: Row) {
        id = row["id"]
        tenant = row["tenant"]
        name = row["name"]
        role = row["role"]
        createdAt = Date(timeIntervalSince1970: row["created_at"])
        lastUsedAt = (row["last_used_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        revokedAt = (row["revoked_at"] as Double?).map(Date.init(timeIntervalSince1970:))
    }
}

public struct AppRecord: Sendable, Equatable {
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

    init(row: Row) {
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
    public let actor: String
    public let action: String
    public let target: String
    public let source: String
    public let outcome: String
}

/// A uniqueness conflict (a tenant that exists), told apart from other store errors.
public struct StoreConflict: Error, Sendable {}

extension Store {
    // MARK: Tenants

    public func createTenant(_ name: String, firstToken: NewTokenRow, topics: String? = nil) async throws {
        try await database.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM tenants WHERE name = ?", arguments: [name]) == true { throw StoreConflict() }
            try db.execute(sql: "INSERT INTO tenants (name, created_at, topics) VALUES (?, ?, ?)",
                           arguments: [name, Date().timeIntervalSince1970, topics])
            try insertToken(db, firstToken)
        }
    }

    public func tenants() async throws -> [TenantRecord] {
        try await database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.name, t.created_at, t.quota, t.topics, (SELECT COUNT(*) FROM apps a WHERE a.tenant = t.name) AS apps
                FROM tenants t ORDER BY t.name
                """).map {
                    TenantRecord(name: $0["name"], createdAt: Date(timeIntervalSince1970: $0["created_at"]), apps: $0["apps"],
                                 quota: $0["quota"], topics: $0["topics"])
                }
        }
    }

    public func tenant(_ name: String) async throws -> TenantRecord? {
        try await tenants().first { $0.name == name }
    }

    public func setTenantQuota(_ name: String, json: String) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE tenants SET quota = ? WHERE name = ?", arguments: [json, name])
        }
    }

    public func setTenantTopics(_ name: String, json: String) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE tenants SET topics = ? WHERE name = ?", arguments: [json, name])
        }
    }

    public func setAppQuota(tenant: String, name: String, json: String) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE apps SET quota = ?, updated_at = ? WHERE tenant = ? AND name = ?",
                           arguments: [json, Date().timeIntervalSince1970, tenant, name])
        }
    }

    /// Removes the tenant with its tokens and apps (their checkpoints included).
    public func deleteTenant(_ name: String) async throws {
        try await database.write { db in
            for table in ["grid_rows", "grid_versions", "source_offsets", "app_epochs"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE app LIKE ? ESCAPE '\\'", arguments: [Self.likePrefix(name + "/")])
            }
            try db.execute(sql: "DELETE FROM apps WHERE tenant = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM tokens WHERE tenant = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM tenants WHERE name = ?", arguments: [name])
        }
    }

    private static func likePrefix(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_") + "%"
    }

    // MARK: Tokens

    /// A token to insert: its secret is already hashed.
    public struct NewTokenRow: Sendable {
        public let id: String
        public let tenant: String?
        public let name: String
        public let role: String
        public let secretSHA256: String

        public init(id: String, tenant: String?, name: String, role: String, secretSHA256: String) {
            self.id = id
            self.tenant = tenant
            self.name = name
            self.role = role
            self.secretSHA256 = secretSHA256
        }
    }

    private func insertToken(_ db: Database, _ token: NewTokenRow) throws {
        try db.execute(sql: """
            INSERT INTO tokens (id, tenant, name, role, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [token.id, token.tenant, token.name, token.role, token.secretSHA256, Date().timeIntervalSince1970])
    }

    public func createToken(_ token: NewTokenRow) async throws {
        try await database.write { db in try self.insertToken(db, token) }
    }

    /// The live (not revoked) token with this secret hash, its last use noted (at most once
    /// a minute, so reads do not turn into writes).
    public func authenticate(secretSHA256: String) async throws -> TokenRecord? {
        let found = try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE secret_sha256 = ? AND revoked_at IS NULL",
                             arguments: [secretSHA256]).map(TokenRecord.init(row:))
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
            try Row.fetchAll(db, sql: "SELECT * FROM tokens WHERE tenant = ? ORDER BY created_at, id", arguments: [tenant]).map(TokenRecord.init(row:))
        }
    }

    /// Revokes the tenant's token; false when it has no such token.
    public func revokeToken(id: String, tenant: String) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND tenant = ?",
                           arguments: [Date().timeIntervalSince1970, id, tenant])
            return db.changesCount > 0
        }
    }

    // MARK: Apps

    public func apps(tenant: String? = nil) async throws -> [AppRecord] {
        try await database.read { db in
            if let tenant {
                return try Row.fetchAll(db, sql: "SELECT * FROM apps WHERE tenant = ? ORDER BY name", arguments: [tenant]).map(AppRecord.init(row:))
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM apps ORDER BY tenant, name").map(AppRecord.init(row:))
        }
    }

    public func app(tenant: String, name: String) async throws -> AppRecord? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name]).map(AppRecord.init(row:))
        }
    }

    /// Creates the app (version 1, stopped) or makes this bundle its next version; returns
    /// the app and whether it is new.
    public func deployApp(tenant: String, name: String, bundleDigest: String, entrypoint: String, runtime: String) async throws -> (AppRecord, created: Bool) {
        try await database.write { db in
            let now = Date().timeIntervalSince1970
            let existing = try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name])
            if existing == nil {
                try db.execute(sql: """
                    INSERT INTO apps (tenant, name, version, bundle_digest, entrypoint, runtime, desired_state, created_at, updated_at)
                    VALUES (?, ?, 1, ?, ?, ?, 'stopped', ?, ?)
                    """, arguments: [tenant, name, bundleDigest, entrypoint, runtime, now, now])
            } else {
                try db.execute(sql: """
                    UPDATE apps SET version = version + 1, bundle_digest = ?, entrypoint = ?, runtime = ?, updated_at = ?
                    WHERE tenant = ? AND name = ?
                    """, arguments: [bundleDigest, entrypoint, runtime, now, tenant, name])
            }
            let row = try Row.fetchOne(db, sql: "SELECT * FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name])!
            return (AppRecord(row: row), existing == nil)
        }
    }

    public func setDesiredState(tenant: String, name: String, _ state: String) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE apps SET desired_state = ?, updated_at = ? WHERE tenant = ? AND name = ?",
                           arguments: [state, Date().timeIntervalSince1970, tenant, name])
        }
    }

    /// Removes the app and its checkpoint.
    public func deleteApp(tenant: String, name: String) async throws {
        try await database.write { db in
            let key = "\(tenant)/\(name)"
            for table in ["grid_rows", "grid_versions", "source_offsets", "app_epochs"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE app = ?", arguments: [key])
            }
            try db.execute(sql: "DELETE FROM apps WHERE tenant = ? AND name = ?", arguments: [tenant, name])
        }
    }

    /// Bundle digests some app still uses.
    public func bundleDigestsInUse() async throws -> Set<String> {
        try await database.read { db in Set(try String.fetchAll(db, sql: "SELECT DISTINCT bundle_digest FROM apps")) }
    }

    // MARK: Audit

    public func audit(tenant: String?, actor: String, action: String, target: String, source: String, outcome: String) async throws {
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO audit (time, tenant, actor, action, target, source, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [Date().timeIntervalSince1970, tenant, actor, action, target, source, outcome])
        }
    }

    /// Newest first; all tenants' when `tenant` is nil.
    public func auditEntries(tenant: String?, limit: Int) async throws -> [AuditEntry] {
        try await database.read { db in
            let rows = if let tenant {
                try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE tenant = ? ORDER BY id DESC LIMIT ?", arguments: [tenant, limit])
            } else {
                try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?", arguments: [limit])
            }
            return rows.map {
                AuditEntry(id: $0["id"], time: Date(timeIntervalSince1970: $0["time"]), tenant: $0["tenant"], actor: $0["actor"],
                           action: $0["action"], target: $0["target"], source: $0["source"], outcome: $0["outcome"])
            }
        }
    }

    /// Answers when the database does (readiness).
    public func ping() async throws {
        _ = try await database.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }
}
