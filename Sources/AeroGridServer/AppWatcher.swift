import AeroGridAPI
import AeroGridCore
import AeroGridFanout
import AeroGridStore
import Foundation
import Synchronization

/// Service discovery on the stream: clients that sent `watch_apps` get their tenant's apps
/// with status, then an `app` event on every deploy, start, stop, crash, state change and
/// delete. It hears of changes as they are announced (`AppChanges`: by the API, and by the
/// supervisor for what happens inside a runner) and compares the tenant's apps then, as
/// typed values.
///
/// One pass describes each changed tenant's apps once and sends both the `apps` lists that
/// new watchers asked for and the events for the others, so a list and the events after it
/// are always consecutive states: nothing falls between them.
final class AppWatcher: Sendable {
    private let apps: AppService
    private struct Watching {
        /// Connections that get events.
        var connections: [ObjectIdentifier: StreamConnection] = [:]
        /// Connections waiting for their `apps` list (sent by the next pass).
        var pending: [ObjectIdentifier: StreamConnection] = [:]
        /// Per tenant watched: each app's last description, compared by the next pass.
        var last: [String: [String: SteadyApp]] = [:]
        /// Tenants with a change announced since their last pass.
        var changed: Set<String> = []
        /// Per tenant: apps changed through the API since the last pass, which get an event
        /// even when they end as they were.
        var touched: [String: Set<String>] = [:]
    }
    private let watching = Mutex(Watching())
    /// Wakes the loop: a change was announced, or a new watcher waits for its list.
    private let wakes: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    init(apps: AppService) {
        self.apps = apps
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        apps.supervisor.changes.listen { [weak self] app, origin in self?.changed(app, by: origin) }
    }

    /// Sends `connection` the list of its tenant's apps (again, if it watches already), then
    /// events.
    func watch(_ connection: StreamConnection) {
        watching.withLock { watching in
            watching.connections[ObjectIdentifier(connection)] = nil
            watching.pending[ObjectIdentifier(connection)] = connection
        }
        wake.yield()
    }

    /// `app` changed: the next pass (at once) compares its tenant's apps.
    private func changed(_ app: AppID, by origin: AppChanges.Origin) {
        watching.withLock { watching in
            watching.changed.insert(app.tenant)
            if origin == .api { watching.touched[app.tenant, default: []].insert(app.name) }
        }
        wake.yield()
    }

    func unwatch(_ connection: StreamConnection) {
        watching.withLock {
            $0.connections[ObjectIdentifier(connection)] = nil
            $0.pending[ObjectIdentifier(connection)] = nil
        }
    }

    /// Runs until cancelled.
    func run() async {
        for await _ in wakes {
            if Task.isCancelled { break }
            await compare()
        }
    }

    private func compare() async {
        // The tenants watched, and of them those to compare: changed, or with a new watcher.
        let (tenants, due) = watching.withLock { watching in
            let watched = Set(watching.connections.values.map(\.tenant) + watching.pending.values.map(\.tenant))
            let due = watched.intersection(watching.changed).union(watching.pending.values.map(\.tenant))
            watching.changed.subtract(due)
            return (watched, due)
        }
        for tenant in due.sorted() {
            // Taken before the apps are described, so the description is from after the change.
            let touched = watching.withLock { $0.touched.removeValue(forKey: tenant) } ?? []
            guard let apps = try? await self.apps.store.apps(tenant: tenant) else {
                // Tried again at the next change.
                watching.withLock {
                    $0.touched[tenant, default: []].formUnion(touched)
                    $0.changed.insert(tenant)
                }
                continue
            }
            var now: [String: SteadyApp] = [:]
            var full: [Schemas.App] = []
            for app in apps {
                let described = await self.apps.describe(app)
                full.append(described)
                now[app.name] = SteadyApp(described)
            }
            let (previous, targets, newcomers) = watching.withLock { watching in
                defer { watching.last[tenant] = now }
                let targets = watching.connections.values.filter { $0.tenant == tenant }
                let newcomers = watching.pending.values.filter { $0.tenant == tenant }
                for connection in newcomers {
                    watching.pending[ObjectIdentifier(connection)] = nil
                    watching.connections[ObjectIdentifier(connection)] = connection
                }
                return (watching.last[tenant], targets, newcomers)
            }
            if !newcomers.isEmpty {
                let list = APIJSON.encode(AppsMessage(apps: full))
                for connection in newcomers { connection.enqueue(list) }
            }
            guard let previous, !targets.isEmpty else { continue }
            var events: [[UInt8]] = []
            for (name, current) in now.sorted(by: { $0.key < $1.key }) {
                guard let before = previous[name] else {
                    events.append(APIJSON.encode(AppEventMessage(event: "deploy", app: current)))
                    continue
                }
                guard before != current || touched.contains(name) else { continue }
                let event =
                    if current.version != before.version { "deploy" } else if current.desiredState != before.desiredState {
                        current.desiredState == .running ? "start" : "stop"
                    } else if current.state != before.state && (current.state == .crashed || current.state == .backoff) { "crash" } else { "state" }
                events.append(APIJSON.encode(AppEventMessage(event: event, app: current)))
            }
            for name in previous.keys.sorted() where now[name] == nil {
                events.append(APIJSON.encode(AppDeletedMessage(app: .init(name: name))))
            }
            for connection in targets { for event in events { connection.enqueue(event) } }
        }
        // Tenants nobody watches any more are forgotten.
        watching.withLock { watching in
            for tenant in watching.last.keys where !tenants.contains(tenant) { watching.last[tenant] = nil }
            for tenant in watching.touched.keys where !tenants.contains(tenant) { watching.touched[tenant] = nil }
            watching.changed.formIntersection(tenants)
        }
    }
}

/// `{"type":"apps","apps":[App…]}`: the answer to `watch_apps`.
struct AppsMessage: Encodable {
    let type = "apps"
    let apps: [Schemas.App]
}

/// `{"type":"app","event","app"}`: an app changed.
struct AppEventMessage: Encodable {
    let type = "app"
    let event: String
    let app: SteadyApp
}

/// `{"type":"app","event":"delete","app":{"name"}}`: an app was deleted.
struct AppDeletedMessage: Encodable {
    struct Name: Encodable { let name: String }
    let type = "app"
    let event = "delete"
    let app: Name
}

/// An app as events describe it (and compare it): without the counters that move all the
/// time (records, lag, usage, updated_at).
struct SteadyApp: Encodable, Equatable {
    let name: String
    let version: Int
    let bundleDigest: String
    let entrypoint: String
    let runtime: String
    let desiredState: Schemas.App.DesiredStatePayload
    let state: Schemas.App.StatePayload
    let crashReason: Schemas.App.CrashReasonPayload?
    let lastCrash: String?
    let restarts: Int
    let quota: Schemas.AppQuota
    let createdAt: Date
    /// In a cluster: the node that runs it.
    let node: String?

    init(_ app: Schemas.App) {
        (name, version, bundleDigest, entrypoint, runtime) = (app.name, app.version, app.bundleDigest, app.entrypoint, app.runtime)
        (desiredState, state, crashReason, lastCrash, restarts) = (app.desiredState, app.state, app.crashReason, app.lastCrash, app.restarts)
        (quota, createdAt, node) = (app.quota, app.createdAt, app.node)
    }

    enum CodingKeys: String, CodingKey {
        case name, version, entrypoint, runtime, state, restarts, quota, node
        case bundleDigest = "bundle_digest"
        case desiredState = "desired_state"
        case crashReason = "crash_reason"
        case lastCrash = "last_crash"
        case createdAt = "created_at"
    }
}
