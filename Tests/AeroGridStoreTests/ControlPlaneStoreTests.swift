import AeroGridCore
import Foundation
import Testing

@testable import AeroGridStore

/// The control plane's writes decide from their inputs and the tables alone: the caller
/// chooses ids and times, so stores given the same writes in the same order end the same
/// (what nodes applying one log of writes need), and a write id is applied once.
@Suite struct ControlPlaneStoreTests {
    func temporaryStore() throws -> (Store, String) {
        let path = "/tmp/aerogrid-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sqlite"
        return (try Store(path: path), path)
    }

    func remove(_ path: String) { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }

    struct Refused: Error {}

    /// Applies `body` as the write `id`; a thrown `Refused` or `StoreConflict` is its outcome.
    @discardableResult
    func write(
        _ store: Store, _ id: String, at time: Date = Date(timeIntervalSince1970: 1_765_000_000.25), position: LogPosition? = nil,
        _ body: @escaping @Sendable (StoreTransaction) throws -> Void
    ) async throws -> ApplyResult {
        try await store.apply(
            writeID: id, at: time, position: position, refusal: { error in error is Refused || error is StoreConflict ? "refused: \(error)" : nil }
        ) {
            try body($0)
            return "ok"
        }
    }

    /// One sequence of writes, with every id and time given.
    func writeAll(_ store: Store) async throws {
        let at = Date(timeIntervalSince1970: 1_765_000_000.25)
        let admin = Store.NewTokenRow(id: "tok_1", tenant: "acme", name: "admin", role: "admin", secretSHA256: "aa", createdAt: at)
        try await write(store, "w1") { try $0.createTenant("acme", id: "ten_0000000000000001", at: at, firstToken: admin, hostUIDs: 900_000_000...900_000_009) }
        let gone = Store.NewTokenRow(id: "tok_2", tenant: "gone", name: "admin", role: "admin", secretSHA256: "bb", createdAt: at)
        try await write(store, "w2") { try $0.createTenant("gone", id: "ten_0000000000000002", at: at, firstToken: gone, hostUIDs: 900_000_000...900_000_009) }
        try await write(store, "w3") { _ = try $0.deleteTenant("gone", at: at.addingTimeInterval(1)) }
        try await write(store, "w4") {
            try $0.createToken(Store.NewTokenRow(id: "tok_3", tenant: "acme", name: "ci", role: "developer", secretSHA256: "cc", createdAt: at))
        }
        try await write(store, "w5") { store in
            guard try store.revokeToken(id: "tok_3", tenant: "acme", at: at.addingTimeInterval(2)) else { throw Refused() }
        }
        try await write(store, "w6") {
            _ = try $0.deployApp(tenant: "acme", name: "orders", bundleDigest: "d1", entrypoint: "app.py", runtime: "python3", at: at)
        }
        try await write(store, "w7") {
            _ = try $0.deployApp(tenant: "acme", name: "orders", bundleDigest: "d2", entrypoint: "app.py", runtime: "python3", at: at.addingTimeInterval(3))
        }
        try await write(store, "w8") {
            _ = try $0.updateApp(tenant: "acme", name: "orders", desiredState: "running", quota: "{}", at: at.addingTimeInterval(4))
        }
    }

    @Test func theSameWritesGiveTheSameTables() async throws {
        let (first, firstPath) = try temporaryStore()
        let (second, secondPath) = try temporaryStore()
        defer { [firstPath, secondPath].forEach(remove) }
        try await writeAll(first)
        try await writeAll(second)
        #expect(try await first.tenants() == second.tenants())
        #expect(try await first.tokens(tenant: "acme") == second.tokens(tenant: "acme"))
        #expect(try await first.outcome(ofWrite: "w5") == "ok")
        #expect(try await first.apps() == second.apps())
        let acme = try #require(try await first.tenant("acme"))
        #expect(acme.id == "ten_0000000000000001" && acme.createdAt == Date(timeIntervalSince1970: 1_765_000_000.25))
        #expect(try await first.apps().first?.version == 2)
        // The deleted tenant's uid is retired: the next tenant gets the one after it.
        let next = Store.NewTokenRow(id: "tok_4", tenant: "next", name: "admin", role: "admin", secretSHA256: "dd", createdAt: Date())
        try await write(first, "w9") {
            try $0.createTenant("next", id: TenantRecord.newID(), at: Date(), firstToken: next, hostUIDs: 900_000_000...900_000_009)
        }
        let created = try await first.tenant("next")
        #expect(acme.hostUID == 900_000_000 && created?.hostUID == 900_000_002)
    }

    @Test func aWriteIDIsAppliedOnceAndARefusalUndoesItsChanges() async throws {
        let (store, path) = try temporaryStore()
        defer { remove(path) }
        let at = Date(timeIntervalSince1970: 1_765_000_000)
        let admin = Store.NewTokenRow(id: "tok_1", tenant: "acme", name: "admin", role: "admin", secretSHA256: "aa", createdAt: at)
        let first = try await write(store, "w1") { try $0.createTenant("acme", id: "ten_1", at: at, firstToken: admin) }
        #expect(first == .applied(outcome: "ok"))
        // The same write again (a retry): answered with its outcome, not applied again.
        let again = try await write(store, "w1") { _ in Issue.record("a repeated write must not run") }
        #expect(again == .repeated(outcome: "ok"))
        // A refused write leaves nothing of what it did before refusing, and keeps its refusal.
        let refused = try await write(store, "w2") { store in
            _ = try store.deployApp(tenant: "acme", name: "half", bundleDigest: "d", entrypoint: "app.py", runtime: "python3", at: at)
            throw Refused()
        }
        #expect(refused.outcome.hasPrefix("refused"))
        #expect(try await store.apps().isEmpty)
        #expect(try await store.outcome(ofWrite: "w2") == refused.outcome)
        // A token's secret is one token, whoever gives it again.
        let twice = Store.NewTokenRow(id: "tok_2", tenant: nil, name: "operator", role: "operator", secretSHA256: "aa", createdAt: at)
        #expect(try await write(store, "w3") { try $0.createToken(twice) }.outcome == "refused: \(StoreConflict.tokenExists)")
        // An error that is not a refusal applies nothing, not even the write id.
        struct Broken: Error {}
        await #expect(throws: Broken.self) { try await write(store, "w4") { _ in throw Broken() } }
        #expect(try await store.outcome(ofWrite: "w4") == nil)
    }

    @Test func theLogPositionIsKeptWithWhatItApplied() async throws {
        let (store, path) = try temporaryStore()
        defer { remove(path) }
        #expect(try await store.position() == nil)
        let at = Date(timeIntervalSince1970: 1_765_000_000)
        let admin = Store.NewTokenRow(id: "tok_1", tenant: "acme", name: "admin", role: "admin", secretSHA256: "aa", createdAt: at)
        try await write(store, "w1", position: LogPosition(clusterID: "cl_1", nextOffset: 8)) {
            try $0.createTenant("acme", id: "ten_1", at: at, firstToken: admin)
        }
        #expect(try await store.position() == LogPosition(clusterID: "cl_1", nextOffset: 8))
        // A refused write moves the position too: the log's record was read and decided.
        try await write(store, "w2", position: LogPosition(clusterID: "cl_1", nextOffset: 9)) { _ in throw Refused() }
        #expect(try await store.position() == LogPosition(clusterID: "cl_1", nextOffset: 9))
        try await store.advance(to: LogPosition(clusterID: "cl_1", nextOffset: 10))
        #expect(try await store.position()?.nextOffset == 10)
    }

    @Test func writeIDsAreForgottenAfterADayOfTheirOwnTimeOrTwoThousandWrites() async throws {
        let (store, path) = try temporaryStore()
        defer { remove(path) }
        let start = Date(timeIntervalSince1970: 1_765_000_000)
        try await write(store, "old", at: start) { _ in }
        try await write(store, "new", at: start.addingTimeInterval(25 * 3600)) { _ in }
        #expect(try await store.outcome(ofWrite: "old") == nil)
        #expect(try await store.outcome(ofWrite: "new") == "ok")
        for n in 0..<2_000 { try await write(store, "w\(n)", at: start.addingTimeInterval(25 * 3600)) { _ in } }
        #expect(try await store.outcome(ofWrite: "new") == nil)
        #expect(try await store.outcome(ofWrite: "w0") == "ok")
        let kept = try await store.controlTables().tables.writes
        #expect(kept.count == 2_000 && kept.last?.writeId == "w1999")
    }
}
