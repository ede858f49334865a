import AeroGridCore
import Synchronization

/// Who hears that an app changed: discovery (the apps list on the stream) and the grid
/// feeds. The API announces what it changes (deploy, start, stop, quota, delete); the
/// supervisor what its runners do (a process starting, running or crashing, grids declared,
/// a new epoch), as it happens: nothing is found out by polling.
final class AppChanges: Sendable {
    /// Who made the change. Discovery sends an event for each change the API made even when
    /// the app ends as it was (a stop and a start in quick succession).
    enum Origin: Sendable {
        case api
        case runtime
    }

    private let listeners = Mutex<[@Sendable (AppID, Origin) -> Void]>([])

    func listen(_ listener: @escaping @Sendable (AppID, Origin) -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    func announce(_ app: AppID, by origin: Origin) {
        for listener in listeners.withLock({ $0 }) { listener(app, origin) }
    }
}
