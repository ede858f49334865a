import AeroGridAPI
import AeroGridFanout
import AeroGridStore
import Foundation
import Synchronization

/// Service discovery on the stream: clients that sent `watch_apps` get their tenant's apps
/// with status, then an `app` event on every deploy, start, stop, crash, state change and
/// delete. Apps are compared a few times a second (a crash happens inside a runner, not
/// through the API); the same pass points the grid feeds at restarted runners.
///
/// One pass describes each watched tenant's apps once and sends both the `apps` lists that
/// new watchers asked for and the events for the others, so a list and the events after it
/// are always consecutive states: nothing falls between them.
final class AppWatcher: Sendable {
    private let hub: FanoutHub
    private let apps: AppService
    private struct Watching {
        /// Connections that get events.
        var connections: [ObjectIdentifier: StreamConnection] = [:]
        /// Connections waiting for their `apps` list (sent by the next pass).
        var pending: [ObjectIdentifier: StreamConnection] = [:]
        /// Per tenant watched: each app's last description, compared by the next pass.
        var last: [String: [String: SteadyApp]] = [:]
        /// Per tenant: apps changed through the API since the last pass, which get an event
        /// even when they end as they were.
        var touched: [String: Set<String>] = [:]
    }
    private let watching = Mutex(Watching())
    /// Wakes the loop early: a new watcher should not wait for the next tick.
    private let wakes: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    static let interval = Duration.milliseconds(250)

    init(hub: FanoutHub, apps: AppService) {
        self.hub = hub
        self.apps = apps
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        apps.events.listen { [weak self] tenant, app in self?.touch(tenant: tenant, app: app) }
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

    /// The API changed `app`: the next pass (at once) sends an event for it.
    func touch(tenant: String, app: String) {
        watching.withLock { $0.touched[tenant, default: []].insert(app) }
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
        let ticker = Task { [wake] in
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.interval)
                wake.yield()
            }
        }
        defer { ticker.cancel() }
        for await _ in wakes {
            if Task.isCancelled { break }
            hub.refresh()
            await compare()
        }
    }

    private func compare() async {
        let tenants = watching.withLock { watching in
            Set(watching.connections.values.map(\.tenant) + watching.pending.values.map(\.tenant))
        }
        for tenant in tenants {
            // Taken before the apps are described, so the description is from after the change.
            let touched = watching.withLock { $0.touched.removeValue(forKey: tenant) } ?? []
            guard let apps = try? await self.apps.store.apps(tenant: tenant) else {
                watching.withLock { $0.touched[tenant, default: []].formUnion(touched) }
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
                let event = if current.version != before.version { "deploy" }
                    else if current.desiredState != before.desiredState { current.desiredState == .running ? "start" : "stop" }
                    else if current.state != before.state && (current.state == .crashed || current.state == .backoff) { "crash" }
                    else { "state" }
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

    init(_ app: Schemas.App) {
        (name, version, bundleDigest, entrypoint, runtime) = (app.name, app.version, app.bundleDigest, app.entrypoint, app.runtime)
        (desiredState, state, crashReason, lastCrash, restarts) = (app.desiredState, app.state, app.crashReason, app.lastCrash, app.restarts)
        (quota, createdAt) = (app.quota, app.createdAt)
    }

    enum CodingKeys: String, CodingKey {
        case name, version, entrypoint, runtime, state, restarts, quota
        case bundleDigest = "bundle_digest", desiredState = "desired_state", crashReason = "crash_reason", lastCrash = "last_crash"
        case createdAt = "created_at"
    }
}
