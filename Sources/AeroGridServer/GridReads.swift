import Synchronization

/// Connections reading whole grids over REST, per tenant (by its id). Each answer is the
/// grid's JSON or CSV, which the server holds until the client has read it — and nothing
/// says when that is, short of the connection closing. So a tenant may have `limit`
/// connections that read a grid at once (a connection asking again keeps its slot), the
/// next is told to try again (`429`), and a slot comes back when its connection closes (an
/// idle one closes at the idle timeout), or at the latest after `expiry`: a few clients that
/// ask and do not read cannot make the server hold a grid per connection.
final class GridReads: Sendable {
    let limit: Int
    let expiry: Duration
    private let slots = Mutex<[String: [ObjectIdentifier: ContinuousClock.Instant]]>([:])

    init(limit: Int = 4, expiry: Duration = .seconds(300)) {
        self.limit = limit
        self.expiry = expiry
    }

    /// A slot for the connection, held until the gate sees it close; false when the tenant's
    /// are all held.
    func take(_ tenant: String, connection: ObjectIdentifier, gate: ConnectionGate) -> Bool {
        let now = ContinuousClock.now
        let taken: Bool? = slots.withLock { slots in
            var held = slots[tenant, default: [:]].filter { now - $0.value < expiry }
            defer { slots[tenant] = held.isEmpty ? nil : held }
            if held[connection] != nil { return nil }  // this connection's already
            guard held.count < limit else { return false }
            held[connection] = now
            return true
        }
        guard let taken else { return true }
        if taken && !gate.whenClosed(connection, { [self] in give(tenant, connection) }) {
            give(tenant, connection)  // not a connection the gate counts (closed already)
        }
        return taken
    }

    private func give(_ tenant: String, _ connection: ObjectIdentifier) {
        slots.withLock { slots in
            slots[tenant]?[connection] = nil
            if slots[tenant]?.isEmpty == true { slots[tenant] = nil }
        }
    }
}
