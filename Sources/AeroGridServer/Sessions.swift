import Synchronization

/// The long-lived sessions of authenticated clients — stream connections and followed
/// logs — by the token and the tenant (its immutable id) they act for. A request is checked
/// against the store each time; a session is checked once, when it opens, so revoking its
/// token or deleting its tenant must end it here, at once.
final class Sessions: Sendable {
    private struct Session {
        let tokenID: String
        let tenantID: String?
        let end: @Sendable (String) -> Void
    }

    private let table = Mutex<(sessions: [UInt64: Session], next: UInt64)>(([:], 0))

    /// Registers a session; `end` is called (once, with the reason) if its token is revoked
    /// or its tenant deleted. Call `close` when it ends by itself.
    func open(tokenID: String, tenantID: String?, end: @escaping @Sendable (String) -> Void) -> UInt64 {
        table.withLock { table in
            defer { table.next += 1 }
            table.sessions[table.next] = Session(tokenID: tokenID, tenantID: tenantID, end: end)
            return table.next
        }
    }

    func close(_ id: UInt64) {
        _ = table.withLock { $0.sessions.removeValue(forKey: id) }
    }

    /// Ends every session of the token.
    func endToken(_ tokenID: String) {
        end(where: { $0.tokenID == tokenID }, reason: "the token was revoked")
    }

    /// Ends every session of the tenant.
    func endTenant(_ tenantID: String) {
        end(where: { $0.tenantID == tenantID }, reason: "the tenant was deleted")
    }

    private func end(where matches: (Session) -> Bool, reason: String) {
        let ended = table.withLock { table in
            let ids = table.sessions.filter { matches($0.value) }.map(\.key)
            return ids.compactMap { table.sessions.removeValue(forKey: $0) }
        }
        for session in ended { session.end(reason) }
    }
}
