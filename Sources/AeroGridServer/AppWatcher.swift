import AeroGridFanout
import AeroGridStore
import Foundation
import Synchronization

/// Service discovery on the stream: clients that sent `watch_apps` get their tenant's apps
/// with status, then an `app` event on every deploy, start, stop, crash, state change and
/// delete. Apps are compared a few times a second (a crash happens inside a runner, not
/// through the API); the same pass points the grid feeds at restarted runners.
final class AppWatcher: Sendable {
    private let store: Store
    private let hub: FanoutHub
    private let describe: @Sendable (AppRecord) async -> [String: Any]
    private struct Watching {
        var connections: [ObjectIdentifier: StreamConnection] = [:]
        /// Per tenant watched: each app's last description, as JSON bytes, and its fields.
        var last: [String: [String: (json: Data, state: String, desired: String, version: Int)]] = [:]
    }
    private let watching = Mutex(Watching())

    init(store: Store, hub: FanoutHub, describe: @escaping @Sendable (AppRecord) async -> [String: Any]) {
        self.store = store
        self.hub = hub
        self.describe = describe
    }

    func watch(_ connection: StreamConnection) async {
        let apps = (try? await store.apps(tenant: connection.tenant)) ?? []
        var list: [[String: Any]] = []
        var baseline: [String: Summary] = [:]
        for app in apps {
            let object = await describe(app)
            list.append(object)
            baseline[app.name] = Self.summary(object, app)
        }
        connection.enqueue(Self.encode(["type": "apps", "apps": list]))
        watching.withLock { watching in
            watching.connections[ObjectIdentifier(connection)] = connection
            // The first watcher of a tenant starts the comparison from what it was sent,
            // so a change right after is an event.
            if watching.last[connection.tenant] == nil { watching.last[connection.tenant] = baseline }
        }
    }

    typealias Summary = (json: Data, state: String, desired: String, version: Int)

    /// What is compared: the app's description without the counters that move all the time.
    static func summary(_ object: [String: Any], _ app: AppRecord) -> Summary {
        var object = object
        for volatile in ["records", "lag", "usage", "updated_at"] { object[volatile] = nil }
        return ((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(),
                object["state"] as? String ?? "", app.desiredState, app.version)
    }

    func unwatch(_ connection: StreamConnection) {
        watching.withLock { $0.connections[ObjectIdentifier(connection)] = nil }
    }

    /// Runs until cancelled.
    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            hub.refresh()
            await compare()
        }
    }

    private func compare() async {
        let tenants = Set(watching.withLock { $0.connections.values.map(\.tenant) })
        for tenant in tenants {
            guard let apps = try? await store.apps(tenant: tenant) else { continue }
            var now: [String: Summary] = [:]
            var described: [String: [String: Any]] = [:]
            for app in apps {
                let object = await describe(app)
                described[app.name] = object
                // Counters that move all the time are not events.
                now[app.name] = Self.summary(object, app)
            }
            let (previous, targets) = watching.withLock { watching -> ([String: Summary]?, [StreamConnection]) in
                defer { watching.last[tenant] = now }
                return (watching.last[tenant], watching.connections.values.filter { $0.tenant == tenant })
            }
            guard let previous else { continue }
            var events: [[UInt8]] = []
            for (name, current) in now.sorted(by: { $0.key < $1.key }) {
                guard let before = previous[name] else {
                    events.append(Self.encode(["type": "app", "event": "deploy", "app": described[name]!]))
                    continue
                }
                guard before.json != current.json else { continue }
                let event = if current.version != before.version { "deploy" }
                    else if current.desired != before.desired { current.desired == "running" ? "start" : "stop" }
                    else if current.state != before.state && (current.state == "crashed" || current.state == "backoff") { "crash" }
                    else { "state" }
                events.append(Self.encode(["type": "app", "event": event, "app": described[name]!]))
            }
            for name in previous.keys.sorted() where now[name] == nil {
                events.append(Self.encode(["type": "app", "event": "delete", "app": ["name": name]]))
            }
            for connection in targets { for event in events { connection.enqueue(event) } }
        }
        // Tenants nobody watches any more are forgotten.
        watching.withLock { watching in
            for tenant in watching.last.keys where !tenants.contains(tenant) { watching.last[tenant] = nil }
        }
    }

    static func encode(_ object: [String: Any]) -> [UInt8] {
        [UInt8]((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
    }
}
