import AeroGridCore
public import AeroGridStore
import Foundation

/// Decides how an app runs: its quota and its tenant's topic ACL, read from the store.
public struct AppPlanner: Sendable {
    let store: Store
    /// Whether an app may start, with this server's quota defaults.
    let admission: Admission

    public init(store: Store, appDefaults: AppQuota) {
        self.store = store
        admission = Admission(appDefaults: appDefaults)
    }

    /// An app's quota where nothing is set: the sandbox profile's defaults.
    var appDefaults: AppQuota { admission.appDefaults }

    func tenant(_ name: String) async throws -> TenantRecord {
        guard let tenant = try await store.tenant(name) else { throw APIError.notFound("no tenant '\(name)'") }
        return tenant
    }

    func tenantQuota(_ name: String) async throws -> TenantQuota {
        QuotaJSON.tenant(try await tenant(name).quota)
    }

    func appQuota(_ app: AppRecord) -> AppQuota { admission.appQuota(app) }

    public func plan(_ app: AppRecord) async throws -> AppPlan {
        plan(app, tenant: try await tenant(app.tenant))
    }

    func plan(_ app: AppRecord, tenant: TenantRecord) -> AppPlan {
        AppPlan(quota: appQuota(app), topics: TopicACL.stored(tenant.topics, tenant: app.tenant), tenantID: tenant.id, hostUID: tenant.hostUID)
    }

    /// What the tenant's apps that should run use, leaving out `except`.
    func used(tenant: String, except: String? = nil) async throws -> (apps: Int, running: Int, memoryBytes: UInt64, cpus: Double) {
        admission.used(try await store.apps(tenant: tenant), except: except)
    }
}

/// Whether an app may start: the apps a tenant runs together stay within the tenant's
/// memory and CPU. Decides from what it is given alone (the apps as one transaction reads
/// them, the defaults a control record carries), so every node decides alike.
struct Admission: Sendable {
    /// An app's quota where nothing is set.
    let appDefaults: AppQuota

    func appQuota(_ app: AppRecord) -> AppQuota {
        QuotaJSON.app(app.quota, defaults: appDefaults)
    }

    /// What `apps` that should run use, leaving out `except`.
    func used(_ apps: [AppRecord], except: String?) -> (apps: Int, running: Int, memoryBytes: UInt64, cpus: Double) {
        let running = apps.filter { $0.desiredState == "running" && $0.name != except }
        // Each quota is bounded (QuotaJSON), so the sums cannot overflow.
        return (
            apps.count, running.count,
            running.reduce(0) { $0 + appQuota($1).memoryBytes }, running.reduce(0) { $0 + appQuota($1).cpus }
        )
    }

    /// Refuses, with the numbers, a start that would take the tenant over its memory or CPU.
    /// `apps` are the tenant's apps as the same transaction reads them.
    func admit(_ app: AppRecord, quota: AppQuota, within limits: TenantQuota, apps: [AppRecord]) throws {
        let used = used(apps, except: app.name)
        if used.memoryBytes + quota.memoryBytes > limits.memoryBytes {
            throw APIError.overQuota(
                "app '\(app.name)' needs \(quota.memoryBytes.mebibytes) of memory; tenant \(app.tenant) may use \(limits.memoryBytes.mebibytes) "
                    + "and its \(used.running) running apps use \(used.memoryBytes.mebibytes) (\((limits.memoryBytes - min(used.memoryBytes, limits.memoryBytes)).mebibytes) left)"
            )
        }
        if used.cpus + quota.cpus > limits.cpus + 1e-9 {
            throw APIError.overQuota(
                "app '\(app.name)' needs \(quota.cpus) CPUs; tenant \(app.tenant) may use \(limits.cpus) and its \(used.running) running apps use \(used.cpus)")
        }
    }

    /// Refuses an app quota larger than its tenant's whole quota.
    func check(_ quota: AppQuota, within limits: TenantQuota, tenant: String) throws {
        if quota.memoryBytes > limits.memoryBytes {
            throw APIError.overQuota("memory_bytes \(quota.memoryBytes) is more than tenant \(tenant)'s whole quota, \(limits.memoryBytes)")
        }
        if quota.cpus > limits.cpus {
            throw APIError.overQuota("cpus \(quota.cpus) is more than tenant \(tenant)'s whole quota, \(limits.cpus)")
        }
    }
}
