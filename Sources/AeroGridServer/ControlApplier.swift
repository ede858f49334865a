import AeroGridAPI
import AeroGridCluster
import AeroGridCore
import AeroGridStore
import Foundation
import Hummingbird

/// What a write came to, as kept in the view under its write id: the status the caller is
/// answered with and, when refused, why. Every node applying the write comes to the same.
struct ControlOutcome: Codable, Sendable, Equatable {
    var status: Int
    var code: String?
    var message: String?
    /// For a deploy: whether it made the app.
    var created: Bool?
    /// Whether this was a retry of a write applied before (not kept: it is each answer's own).
    var repeated = false

    private enum CodingKeys: String, CodingKey { case status, code, message, created }

    static let ok = ControlOutcome(status: 200)

    init(status: Int, code: String? = nil, message: String? = nil, created: Bool? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.created = created
    }

    init(refusal: APIError) {
        self.init(status: Int(refusal.status.code), code: refusal.code.rawValue, message: refusal.message)
    }

    /// The refusal to answer with, or nil when the write was applied.
    var refusal: APIError? {
        guard status >= 400 else { return nil }
        return APIError(
            HTTPResponse.Status(code: status), code.flatMap(APIError.Code.init(rawValue:)) ?? ._internal, message ?? "the write was refused")
    }

    var text: String { String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self) }

    init(text: String) {
        self =
            (try? JSONDecoder().decode(ControlOutcome.self, from: Data(text.utf8)))
            ?? ControlOutcome(status: 500, code: "internal", message: "the write's outcome does not read")
    }
}

/// Applies control records to this node's view: each precondition (a name taken, a quota
/// reached, an app gone) is checked inside the transaction that applies it, from the record
/// and the tables alone, so every node applying the same log decides alike and a refused
/// write is refused everywhere with the same answer.
struct ControlApplier: Sendable {
    let store: Store

    /// Applies the record (once: a write id already applied is answered with its first
    /// outcome); `isNew` tells whether it was applied now.
    func apply(_ record: ControlRecord, position: LogPosition?) async throws -> (outcome: ControlOutcome, isNew: Bool) {
        let result = try await store.apply(
            writeID: record.writeID, at: record.at, position: position,
            refusal: { error in
                switch error {
                case let refusal as APIError: ControlOutcome(refusal: refusal).text
                case StoreConflict.constraint(let rule): ControlOutcome(refusal: .conflict("the write breaks a rule of the store: \(rule)")).text
                default: nil
                }
            }
        ) { transaction in
            try Self.apply(record, in: transaction).text
        }
        switch result {
        case .applied(let outcome): return (ControlOutcome(text: outcome), true)
        case .repeated(let text):
            var outcome = ControlOutcome(text: text)
            outcome.repeated = true
            return (outcome, false)
        }
    }

    static func apply(_ record: ControlRecord, in store: StoreTransaction) throws -> ControlOutcome {
        let at = record.at
        switch record.change {
        case .clusterInit(let body):
            // The follower reads the cluster's id from it; the first secret stays.
            if let secret = body.peerSecret { try store.setPeerSecret(secret) }
        case .snapshot:
            // A new view is seeded from one; a view following the log has what it holds already.
            return .ok
        case .nodeHello(let body):
            guard ClusterSettings.nodeIDProblem(body.nodeId) == nil, ClusterSettings.advertisedURLProblem(body.advertisedUrl) == nil else {
                throw APIError.badRequest("a node id or advertised URL that is not valid")
            }
            try store.noteNode(body.nodeId, advertisedURL: body.advertisedUrl, at: at)
        case .createTenant(let body):
            guard body.hostUids.low <= body.hostUids.high else { throw APIError.badRequest("the host uid range is empty") }
            let token = body.token
            guard token.tenant == body.name, token.role == Role.admin.rawValue else {
                throw APIError.badRequest("a new tenant's first token must be an admin token of that tenant")
            }
            do {
                try store.createTenant(
                    body.name, id: body.tenantId, at: at, firstToken: row(token, at: at), topics: body.topics.map { TopicACL(rules: $0).json },
                    hostUIDs: body.hostUids.low...body.hostUids.high)
            } catch StoreConflict.tenantExists {
                throw APIError.conflict("tenant '\(body.name)' already exists")
            } catch StoreConflict.nameRetired {
                throw APIError(
                    .conflict, .nameRetired,
                    "tenant name '\(body.name)' belonged to a deleted tenant; names are never given out again (its topics and audit stay its own): choose another"
                )
            } catch StoreConflict.noHostUID(let range) {
                throw APIError(
                    .serviceUnavailable, .noHostUid,
                    "every host uid of [sandbox] host_uids (\(range.lowerBound)-\(range.upperBound)) is taken; an operator must widen the range")
            } catch StoreConflict.tokenExists {
                throw APIError.conflict("a token with this id or secret exists")
            }
        case .deleteTenant(let body):
            guard try store.deleteTenant(body.name, at: at) else { throw APIError.notFound("no tenant '\(body.name)'") }
        case .setTenantQuota(let body):
            guard let tenant = try store.tenant(body.name) else { throw APIError.notFound("no tenant '\(body.name)'") }
            _ = try store.setTenantQuota(body.name, json: try QuotaJSON.merge(QuotaJSON.Change(body.quota), into: tenant.quota))
        case .setTenantACL(let body):
            let acl = try TopicACL.validated(body.topics)
            guard try store.setTenantTopics(body.name, json: acl.json) else { throw APIError.notFound("no tenant '\(body.name)'") }
        case .assignHostUIDs(let range):
            guard range.low <= range.high else { throw APIError.badRequest("the host uid range is empty") }
            do {
                try store.assignHostUIDs(in: range.low...range.high)
            } catch StoreConflict.noHostUID(let range) {
                throw APIError(.serviceUnavailable, .noHostUid, "every host uid of \(range.lowerBound)-\(range.upperBound) is taken")
            }
        case .createToken(let token):
            guard let role = Role(rawValue: token.role), (role == .operator) == (token.tenant == nil) else {
                throw APIError.badRequest("an operator token has no tenant; a tenant's token is admin, developer or viewer")
            }
            if let tenant = token.tenant, try store.tenant(tenant) == nil { throw APIError.notFound("no tenant '\(tenant)'") }
            do {
                try store.createToken(row(token, at: at))
            } catch StoreConflict.tokenExists {
                throw APIError.conflict("a token with this id or secret exists")
            }
        case .revokeToken(let body):
            guard try store.revokeToken(id: body.id, tenant: body.tenant, at: at) else {
                throw APIError.notFound("no token '\(body.id.cut(toBytes: 64))' in this tenant")
            }
        case .deployApp(let body):
            guard let owner = try store.tenant(body.tenant), owner.id == body.tenantId else { throw APIError.notFound("no tenant '\(body.tenant)'") }
            do {
                let (_, created) = try store.deployApp(
                    tenant: body.tenant, name: body.name, id: body.appId, bundleDigest: body.bundleDigest, entrypoint: body.entrypoint, runtime: body.runtime,
                    maxApps: QuotaJSON.tenant(owner.quota).maxApps, at: at)
                return ControlOutcome(status: created ? 201 : 200, created: created)
            } catch StoreConflict.tooManyApps(let count, let limit) {
                throw APIError.overQuota("tenant \(body.tenant) has \(count) apps, its quota (max_apps \(limit)); delete one first")
            }
        case .startApp(let body):
            guard body.appDefaults.isBounded else { throw APIError.badRequest("the record's app quota defaults are out of range") }
            let admission = Admission(appDefaults: AppQuota(body.appDefaults))
            let (app, all, owner) = try appWithTenant(body.tenant, body.name, in: store)
            try admission.admit(app, quota: admission.appQuota(app), within: QuotaJSON.tenant(owner.quota), apps: all)
            _ = try store.updateApp(tenant: app.tenant, name: app.name, desiredState: "running", quota: app.quota, at: at)
        case .stopApp(let body):
            let (app, _, _) = try appWithTenant(body.tenant, body.name, in: store)
            _ = try store.updateApp(tenant: app.tenant, name: app.name, desiredState: "stopped", quota: app.quota, at: at)
        case .setAppQuota(let body):
            guard body.appDefaults.isBounded else { throw APIError.badRequest("the record's app quota defaults are out of range") }
            let admission = Admission(appDefaults: AppQuota(body.appDefaults))
            let (app, all, owner) = try appWithTenant(body.tenant, body.name, in: store)
            let limits = QuotaJSON.tenant(owner.quota)
            let merged = try QuotaJSON.merge(QuotaJSON.Change(body.quota), into: app.quota)
            let quota = QuotaJSON.app(merged, defaults: admission.appDefaults)
            try admission.check(quota, within: limits, tenant: app.tenant)
            if app.desiredState == "running" { try admission.admit(app, quota: quota, within: limits, apps: all) }
            _ = try store.updateApp(tenant: app.tenant, name: app.name, desiredState: app.desiredState, quota: merged, at: at)
        case .deleteApp(let body):
            guard try store.deleteApp(tenant: body.tenant, name: body.name) else { throw APIError.notFound("no app '\(body.name)'") }
        }
        return .ok
    }

    /// The app with its tenant's apps and the tenant, as the transaction sees them.
    private static func appWithTenant(
        _ tenant: String, _ name: String, in store: StoreTransaction
    ) throws -> (AppRecord, [AppRecord], TenantRecord) {
        guard let owner = try store.tenant(tenant) else { throw APIError.notFound("no tenant '\(tenant)'") }
        let all = try store.apps(tenant: tenant)
        guard let app = all.first(where: { $0.name == name }) else { throw APIError.notFound("no app '\(name)'") }
        return (app, all, owner)
    }

    private static func row(_ token: ControlChange.TokenFields, at: Date) -> Store.NewTokenRow {
        Store.NewTokenRow(id: token.id, tenant: token.tenant, name: token.name, role: token.role, secretSHA256: token.secretSha256, createdAt: at)
    }
}

extension QuotaJSON.Change {
    init(_ change: ControlChange.QuotaChange) {
        self.init(numbers: change.numbers, cpus: change.cpus, reset: Set(change.reset))
    }
}

extension ControlChange.QuotaChange {
    init(_ change: QuotaJSON.Change) {
        self.init(numbers: change.numbers, cpus: change.cpus, reset: change.reset.sorted())
    }
}

extension AppQuota {
    init(_ defaults: ControlChange.AppDefaults) {
        self.init(memoryBytes: defaults.memoryBytes, cpus: defaults.cpus, pids: defaults.pids, gridRows: defaults.gridRows)
    }
}

extension ControlChange.AppDefaults {
    /// Within what an operator may set, so no sum of them can overflow.
    var isBounded: Bool {
        memoryBytes <= 1 << 40 && cpus > 0 && cpus <= QuotaJSON.maxCPUs && (1...4_194_304).contains(pids) && (1...100_000_000).contains(gridRows)
    }

    init(_ quota: AppQuota) {
        self.init(memoryBytes: quota.memoryBytes, cpus: quota.cpus, pids: quota.pids, gridRows: quota.gridRows)
    }
}
