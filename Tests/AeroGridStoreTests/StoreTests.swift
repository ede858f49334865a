import AeroGridCore
import Foundation
import GRDB
import Testing

@testable import AeroGridStore

/// The store: its migrations, and checkpoints that come back exactly as written — rows
/// with their cells' JSON types and their keys' types, versions, offsets — in a new epoch
/// each time they are loaded to run from.
@Suite struct StoreTests {
    func temporaryStore() throws -> (Store, String) {
        let path = "/tmp/aerogrid-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sqlite"
        return (try Store(path: path), path)
    }

    @Test func aCheckpointRoundTripsRowsKeyAndCellTypesVersionsAndOffsets() async throws {
        let (store, path) = try temporaryStore()
        defer { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }
        var delta = CheckpointDelta()
        delta.rows = [
            "g": [
                .string("7"): ["a": .string("x"), "b": .double(1.5)],
                .int(7): ["a": .null, "b": .bool(false), "c": .double(4.0), "d": .double(0), "e": .int(4)],
            ]
        ]
        delta.versions = ["g": 3]
        delta.offsets = [SourcePartition(topic: "t", partition: 2): 99]
        try await store.saveCheckpoint(app: "demo/app", delta)
        var removal = CheckpointDelta()
        removal.rows = ["g": [.string("7"): nil]]
        try await store.saveCheckpoint(app: "demo/app", removal)

        let checkpoint = try await store.loadCheckpoint(app: "demo/app")
        // A whole double stays a double: the app reads back the 4.0 it wrote, not 4.
        #expect(checkpoint.grids == ["g": [.int(7): ["a": .null, "b": .bool(false), "c": .double(4.0), "d": .double(0), "e": .int(4)]]])
        #expect(checkpoint.versions == ["g": 3])
        #expect(checkpoint.offsets == [SourcePartition(topic: "t", partition: 2): 99])
        #expect(try await store.loadCheckpoint(app: "other/app") == GridCheckpoint())
    }

    @Test func epochsGoUpPerApp() async throws {
        let (store, path) = try temporaryStore()
        defer { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }
        #expect(try await store.nextEpoch(app: "a") == 1)
        #expect(try await store.nextEpoch(app: "a") == 2)
        #expect(try await store.nextEpoch(app: "b") == 1)
        // Reopening keeps them: the file is the state.
        let reopened = try Store(path: path)
        #expect(try await reopened.nextEpoch(app: "a") == 3)
    }

    @Test func everyMigrationRunsOnceInOrder() throws {
        let (store, path) = try temporaryStore()
        defer { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }
        let applied = try store.database.read { try Store.migrator.appliedIdentifiers($0) }
        #expect(
            applied == [
                "v1-grid-checkpoints", "v2-control-plane", "v3-quotas-and-acls", "v4-tenant-ids", "v5-control-view", "v6-cluster-nodes", "v7-audit-topic",
                "v8-app-ids",
            ])
        // Opening it again changes nothing: no migration runs twice.
        let again = try Store(path: path)
        #expect(try again.database.read { try Store.migrator.hasCompletedMigrations($0) })
        #expect(try again.database.read { try Store.migrator.appliedIdentifiers($0) } == applied)
    }

    @Test func aDeletedCheckpointIsEmptyAndItsNextEpochIsNew() async throws {
        let (store, path) = try temporaryStore()
        defer { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }
        let app = AppID(tenant: "t", name: "a").description
        let before = try await store.nextEpoch(app: app)
        var delta = CheckpointDelta()
        delta.rows["g"] = [.string("k"): ["c": .int(1)]]
        delta.offsets[SourcePartition(topic: "orders", partition: 0)] = 10
        try await store.saveCheckpoint(app: app, delta)
        try await store.deleteCheckpoint(app: app)
        #expect(try await store.loadCheckpoint(app: app).grids.isEmpty)
        #expect(try await store.loadCheckpoint(app: app).offsets.isEmpty)
        #expect(try await store.nextEpoch(app: app) > before, "a reset is a new epoch, never an old one again")
    }
}
