import AeroGridCore
import Foundation
import Testing

@testable import AeroGridStore

/// The control plane's writes decide from their inputs and the tables alone: the caller
/// chooses ids and times, so stores given the same writes in the same order end the same
/// (what nodes applying one log of writes need).
@Suite struct ControlPlaneStoreTests {
    func temporaryStore() throws -> (Store, String) {
        let path = "/tmp/aerogrid-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sqlite"
        return (try Store(path: path), path)
    }

    func remove(_ path: String) { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }

    /// One sequence of writes, with every id and time given.
    func write(_ store: Store) async throws {
        let at = Date(timeIntervalSince1970: 1_765_000_000.25)
        let admin = Store.NewTokenRow(id: "tok_1", tenant: "acme", name: "admin", role: "admin", secretSHA256: "aa", createdAt: at)
        try await store.createTenant("acme", id: "ten_0000000000000001", at: at, firstToken: admin, hostUIDs: 900_000_000...900_000_009)
        let gone = Store.NewTokenRow(id: "tok_2", tenant: "gone", name: "admin", role: "admin", secretSHA256: "bb", createdAt: at)
        try await store.createTenant("gone", id: "ten_0000000000000002", at: at, firstToken: gone, hostUIDs: 900_000_000...900_000_009)
        try await store.deleteTenant("gone", at: at.addingTimeInterval(1))
        try await store.createToken(Store.NewTokenRow(id: "tok_3", tenant: "acme", name: "ci", role: "developer", secretSHA256: "cc", createdAt: at))
        #expect(try await store.revokeToken(id: "tok_3", tenant: "acme", at: at.addingTimeInterval(2)))
        _ = try await store.deployApp(tenant: "acme", name: "orders", bundleDigest: "d1", entrypoint: "app.py", runtime: "python3", at: at)
        _ = try await store.deployApp(
            tenant: "acme", name: "orders", bundleDigest: "d2", entrypoint: "app.py", runtime: "python3", at: at.addingTimeInterval(3))
        try await store.setDesiredState(tenant: "acme", name: "orders", "running", at: at.addingTimeInterval(4))
        try await store.audit(
            tenant: "acme", tenantID: "ten_0000000000000001", actor: "tok_1", action: "app.deploy", target: "orders", source: "127.0.0.1", outcome: "ok", at: at
        )
    }

    @Test func theSameWritesGiveTheSameTables() async throws {
        let (first, firstPath) = try temporaryStore()
        let (second, secondPath) = try temporaryStore()
        defer { [firstPath, secondPath].forEach(remove) }
        try await write(first)
        try await write(second)
        #expect(try await first.tenants() == second.tenants())
        #expect(try await first.tokens(tenant: "acme") == second.tokens(tenant: "acme"))
        #expect(try await first.apps() == second.apps())
        #expect(try await first.auditEntries(tenantID: nil, limit: 10) == second.auditEntries(tenantID: nil, limit: 10))
        let acme = try #require(try await first.tenant("acme"))
        #expect(acme.id == "ten_0000000000000001" && acme.createdAt == Date(timeIntervalSince1970: 1_765_000_000.25))
        // The deleted tenant's uid is retired: the next tenant gets the one after it.
        let next = Store.NewTokenRow(id: "tok_4", tenant: "next", name: "admin", role: "admin", secretSHA256: "dd", createdAt: Date())
        let created = try await first.createTenant("next", id: TenantRecord.newID(), at: Date(), firstToken: next, hostUIDs: 900_000_000...900_000_009)
        #expect(acme.hostUID == 900_000_000 && created.hostUID == 900_000_002)
    }

    @Test func anAppChangeDecidesOnTheTenantAsItIsInTheSameTransaction() async throws {
        let (store, path) = try temporaryStore()
        defer { remove(path) }
        let at = Date()
        let admin = Store.NewTokenRow(id: "tok_1", tenant: "acme", name: "admin", role: "admin", secretSHA256: "aa", createdAt: at)
        try await store.createTenant("acme", id: TenantRecord.newID(), at: at, firstToken: admin)
        _ = try await store.deployApp(tenant: "acme", name: "orders", bundleDigest: "d1", entrypoint: "app.py", runtime: "python3", at: at)
        try await store.setTenantQuota("acme", json: #"{"memory_bytes":1}"#)
        let seen = try await store.changeApp(tenant: "acme", name: "orders", at: at) { app, all, owner in
            // The quota just set, not one read before the transaction.
            #expect(owner.quota == #"{"memory_bytes":1}"# && all.map(\.name) == ["orders"])
            return ("running", app.quota)
        }
        #expect(seen?.desiredState == "running")
        #expect(try await store.changeApp(tenant: "nobody", name: "orders", at: at) { app, _, _ in ("running", app.quota) } == nil)
    }
}
