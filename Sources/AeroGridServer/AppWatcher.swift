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
    private let store: Store
    private let hub: FanoutHub
    private let describe: @Sendable (AppRecord) async -> [String: Any]
    private struct Watching {
        /// Connections that get events.
        var connections: [ObjectIdentifier: StreamConnection] = [:]
        /// Connections waiting for their `apps` list (sent by the next pass).
        var pending: [ObjectIdentifier: StreamConnection] = [:]
        /// Per tenant watched: each app's last description, compared by the next pass.
        var last: [String: [String: Summary]] = [:]
        /// Per tenant: apps changed through the API since the last pass, which get an event
        /// even when they end as they were.
        var touched: [String: Set<String>] = [:]
    }
    private let watching = Mutex(Watching())
    /// Wakes the loop early: a new watcher should not wait for the next tick.
    private let wakes: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    static let interval = Duration.milliseconds(250)

    init(store: Store, hub: FanoutHub, describe: @escaping @Sendable (AppRecord) async -> [String: Any]) {
        self.store = store
        self.hub = hub
        self.describe = describe
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
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

    typealias Summary = (json: Data, state: String, desired: String, version: Int)

    /// An app as events describe it: without the counters that move all the time.
    static func steady(_ object: [String: Any]) -> [String: Any] {
        var object = object
        for volatile in ["records", "lag", "usage", "updated_at"] { object[volatile] = nil }
        return object
    }

    static func summary(_ steady: [String: Any], _ app: AppRecord) -> Summary {
        ((try? JSONSerialization.data(withJSONObject: steady, options: [.sortedKeys])) ?? Data(),
         steady["state"] as? String ?? "", app.desiredState, app.version)
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
            guard let apps = try? await store.apps(tenant: tenant) else {
                watching.withLock { $0.touched[tenant, default: []].formUnion(touched) }
                continue
            }
            var now: [String: Summary] = [:]
            var full: [[String: Any]] = []
            var steady: [String: [String: Any]] = [:]
            for app in apps {
                let object = await describe(app)
                full.append(object)
                steady[app.name] = Self.steady(object)
                now[app.name] = Self.summary(steady[app.name]!, app)
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
                let list = Self.encode(["type": "apps", "apps": full])
                for connection in newcomers { connection.enqueue(list) }
            }
            guard let previous, !targets.isEmpty else { continue }
            var events: [[UInt8]] = []
            for (name, current) in now.sorted(by: { $0.key < $1.key }) {
                guard let before = previous[name] else {
                    events.append(Self.encode(["type": "app", "event": "deploy", "app": steady[name]!]))
                    continue
                }
                guard before.json != current.json || touched.contains(name) else { continue }
                let event = if current.version != before.version { "deploy" }
                    else if current.desired != before.desired { current.desired == "running" ? "start" : "stop" }
                    else if current.state != before.state && (current.state == "crashed" || current.state == "backoff") { "crash" }
                    else { "state" }
                events.append(Self.encode(["type": "app", "event": event, "app": steady[name]!]))
            }
            for name in previous.keys.sorted() where now[name] == nil {
                events.append(Self.encode(["type": "app", "event": "delete", "app": ["name": name]]))
            }
            for connection in targets { for event in events { connection.enqueue(event) } }
        }
        // Tenants nobody watches any more are forgotten.
        watching.withLock { watching in
            for tenant in watching.last.keys where !tenants.contains(tenant) { watching.last[tenant] = nil }
            for tenant in watching.touched.keys where !tenants.contains(tenant) { watching.touched[tenant] = nil }
        }
    }

    static func encode(_ object: [String: Any]) -> [UInt8] {
        [UInt8]((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
    }
}
