import AeroGridStore
import Foundation
import Testing

@testable import AeroGridServer

/// Control records: every type reads back as written, records of format 1 (as a node of
/// that version wrote them) still read, and nodes applying the same records in the same
/// order come to the same outcomes and the same tables — the loser of a conflict told why.
@Suite struct ControlRecordTests {
    static let at = Date(timeIntervalSince1970: 1_765_000_000.5)
    static let defaults = ControlChange.AppDefaults(memoryBytes: 256 << 20, cpus: 1, pids: 64, gridRows: 100_000)

    static func token(_ id: String, tenant: String?, hash: String) -> ControlChange.TokenFields {
        .init(id: id, tenant: tenant, name: "admin", role: tenant == nil ? "operator" : "admin", secretSha256: hash)
    }

    static func tenant(_ name: String, id: String, hash: String) -> ControlChange {
        .createTenant(
            .init(
                tenantId: id, name: name, topics: ["\(name).*"], hostUids: .init(low: 900_000_000, high: 900_000_099),
                token: token("tok_\(id)", tenant: name, hash: hash)))
    }

    /// One record of every type.
    static let everyType: [ControlChange] = [
        .clusterInit(.init(clusterId: "cl_00000000000000aa")),
        tenant("acme", id: "ten_1", hash: "aa"),
        .setTenantQuota(.init(name: "acme", quota: .init(numbers: ["max_apps": 3], cpus: 1.5, reset: ["memory_bytes"]))),
        .setTenantACL(.init(name: "acme", topics: ["acme.*", "orders"])),
        .assignHostUIDs(.init(low: 900_000_000, high: 900_000_099)),
        .createToken(token("tok_2", tenant: "acme", hash: "bb")),
        .revokeToken(.init(tenant: "acme", id: "tok_2")),
        .deployApp(.init(tenant: "acme", name: "orders", tenantId: "ten_1", bundleDigest: "d1", entrypoint: "app.py", runtime: "python3")),
        .startApp(.init(tenant: "acme", name: "orders", restart: false, appDefaults: defaults)),
        .setAppQuota(.init(tenant: "acme", name: "orders", quota: .init(numbers: ["pids": 32], cpus: nil, reset: []), appDefaults: defaults)),
        .stopApp(.init(tenant: "acme", name: "orders")),
        .deleteApp(.init(tenant: "acme", name: "orders")),
        .deleteTenant(.init(name: "acme")),
    ]

    @Test func everyTypeReadsBackAsWritten() throws {
        for change in Self.everyType {
            let record = ControlRecord(writeID: "w_\(change.type)", at: Self.at, change: change)
            #expect(try ControlRecord(decoding: record.encoded()) == record)
        }
    }

    /// Records exactly as format 1 writes them. A later format must keep reading these.
    static let formatOne = [
        #"{"at":1765000000.5,"body":{"clusterId":"cl_00000000000000aa"},"type":"cluster.init","v":1,"write":"w_1"}"#,
        #"{"at":1765000000.5,"body":{"hostUids":{"high":900000099,"low":900000000},"name":"acme","tenantId":"ten_1","token":{"id":"tok_ten_1","name":"admin","role":"admin","secretSha256":"aa","tenant":"acme"},"topics":["acme.*"]},"type":"tenant.create","v":1,"write":"w_2"}"#,
        #"{"at":1765000000.5,"body":{"bundleDigest":"d1","entrypoint":"app.py","name":"orders","runtime":"python3","tenant":"acme","tenantId":"ten_1"},"type":"app.deploy","v":1,"write":"w_3"}"#,
        #"{"at":1765000000.5,"body":{"appDefaults":{"cpus":1,"gridRows":100000,"memoryBytes":268435456,"pids":64},"name":"orders","restart":false,"tenant":"acme"},"type":"app.start","v":1,"write":"w_4"}"#,
        #"{"at":1765000000.5,"body":{"name":"acme","quota":{"cpus":1.5,"numbers":{"max_apps":3},"reset":["memory_bytes"]}},"type":"tenant.quota","v":1,"write":"w_5"}"#,
    ]

    @Test func recordsOfFormatOneStillRead() throws {
        let read = try Self.formatOne.map { try ControlRecord(decoding: Array($0.utf8)) }
        #expect(read.map(\.change) == [Self.everyType[0], Self.everyType[1], Self.everyType[7], Self.everyType[8], Self.everyType[2]])
        #expect(read.map(\.writeID) == ["w_1", "w_2", "w_3", "w_4", "w_5"] && read.allSatisfy { $0.at == Self.at })
        // And this node writes format 1 byte for byte (keys sorted), so the fixture is what it wrote.
        #expect(String(decoding: read[1].encoded(), as: UTF8.self) == Self.formatOne[1])
    }

    @Test func aNewerFormatStopsTheReaderAndGarbageIsSkippable() {
        let newer = #"{"at":1,"body":{},"type":"tenant.create","v":2,"write":"w_1"}"#
        #expect(throws: ControlRecord.Unreadable.self) { try ControlRecord(decoding: Array(newer.utf8)) }
        do {
            _ = try ControlRecord(decoding: Array(newer.utf8))
        } catch {
            #expect(error.newerFormat == 2 && error.description.contains("upgrade"))
        }
        for garbage in [
            "", "{}", #"{"at":1,"body":{},"type":"tenant.explode","v":1,"write":"w"}"#, #"{"at":1,"body":{"name":7},"type":"tenant.delete","v":1,"write":"w"}"#,
        ] {
            do {
                _ = try ControlRecord(decoding: Array(garbage.utf8))
                Issue.record("\(garbage) was read")
            } catch {
                #expect(error.newerFormat == nil)
            }
        }
    }

    func temporaryStore() throws -> (Store, String) {
        let path = "/tmp/aerogrid-records-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sqlite"
        return (try Store(path: path), path)
    }

    func remove(_ path: String) { ["", "-wal", "-shm"].forEach { try? FileManager.default.removeItem(atPath: path + $0) } }

    /// Two nodes' writes in the order a log gives them: two creating one tenant name, two
    /// starts that together exceed the tenant's memory.
    static let log: [ControlRecord] = {
        let small = ControlChange.QuotaChange(numbers: ["memory_bytes": 384 << 20], cpus: nil, reset: [])
        let changes: [ControlChange] = [
            tenant("acme", id: "ten_node1", hash: "h1"),
            tenant("acme", id: "ten_node2", hash: "h2"),
            .setTenantQuota(.init(name: "acme", quota: small)),
            .deployApp(.init(tenant: "acme", name: "a", tenantId: "ten_node1", bundleDigest: "d1", entrypoint: "app.py", runtime: "python3")),
            .deployApp(.init(tenant: "acme", name: "b", tenantId: "ten_node1", bundleDigest: "d2", entrypoint: "app.py", runtime: "python3")),
            .startApp(.init(tenant: "acme", name: "a", restart: false, appDefaults: defaults)),
            .startApp(.init(tenant: "acme", name: "b", restart: false, appDefaults: defaults)),
        ]
        return changes.enumerated().map { ControlRecord(writeID: "w_\($0.offset)", at: at.addingTimeInterval(Double($0.offset)), change: $0.element) }
    }()

    @Test func nodesApplyingOneLogDecideAlike() async throws {
        let (first, firstPath) = try temporaryStore()
        let (second, secondPath) = try temporaryStore()
        defer { [firstPath, secondPath].forEach(remove) }
        var outcomes: [[ControlOutcome]] = []
        for store in [first, second] {
            let applier = ControlApplier(store: store)
            var these: [ControlOutcome] = []
            for (offset, record) in Self.log.enumerated() {
                these.append(try await applier.apply(record, position: LogPosition(clusterID: "cl_1", nextOffset: Int64(offset + 1))).outcome)
            }
            outcomes.append(these)
        }
        #expect(outcomes[0] == outcomes[1])
        let decided = outcomes[0]
        // The first to create the name wins; the second is told why.
        #expect(decided[0] == .ok && decided[1].status == 409 && decided[1].message == "tenant 'acme' already exists")
        let acme = try await first.tenant("acme")
        let tokens = try await first.tokens(tenant: "acme")
        #expect(acme?.id == "ten_node1" && tokens.count == 1)
        // 384 MiB: the first start (256 MiB) is admitted, the second refused with the numbers.
        #expect(decided[5] == .ok && decided[6].status == 403 && decided[6].code == "over_quota")
        #expect(decided[6].message?.contains("256 MiB of memory") == true)
        #expect(try await first.apps().map(\.desiredState) == ["running", "stopped"])
        #expect(try await first.apps() == second.apps())
        #expect(try await first.tenants() == second.tenants())
        #expect(try await first.position() == LogPosition(clusterID: "cl_1", nextOffset: Int64(Self.log.count)))
        // A write read again (a retry appended twice) is answered with its first outcome.
        let again = try await ControlApplier(store: first).apply(Self.log[4], position: nil)
        let b = try await first.app(tenant: "acme", name: "b")
        var firstAnswer = decided[4]
        firstAnswer.repeated = true
        #expect(again.outcome == firstAnswer && !again.isNew && b?.version == 1)
    }

    @Test func numbersInARecordCannotTrap() async throws {
        let (store, path) = try temporaryStore()
        defer { remove(path) }
        let applier = ControlApplier(store: store)
        _ = try await applier.apply(ControlRecord(writeID: "w1", at: Self.at, change: Self.tenant("acme", id: "ten_1", hash: "aa")), position: nil)
        _ = try await applier.apply(Self.log[3], position: nil)
        let huge = ControlChange.AppDefaults(memoryBytes: .max, cpus: .infinity, pids: .max, gridRows: .max)
        let start = try await applier.apply(
            ControlRecord(writeID: "w2", at: Self.at, change: .startApp(.init(tenant: "acme", name: "a", restart: false, appDefaults: huge))), position: nil)
        #expect(start.outcome.status == 400)
        let unknown = ControlChange.QuotaChange(numbers: ["no_such_value": 1], cpus: .nan, reset: [])
        let quota = try await applier.apply(
            ControlRecord(writeID: "w3", at: Self.at, change: .setTenantQuota(.init(name: "acme", quota: unknown))), position: nil)
        #expect(quota.outcome.status == 400)
        let backwards = try await applier.apply(ControlRecord(writeID: "w4", at: Self.at, change: .assignHostUIDs(.init(low: 10, high: 1))), position: nil)
        #expect(backwards.outcome.status == 400)
    }

    @Test func aSnapshotIsSplitInPartsBelowAMegabyteAndJoinsBackWhole() {
        // Rows as a snapshot carries them (their types have no public initializer: only the store makes them).
        let tokens = (0..<6_000).map { n in
            #"{"id":"tok_\#(n)","tenant":"acme","name":"\#(String(repeating: "n", count: 200))","role":"viewer","secretSha256":"\#(n)","createdAt":1}"#
        }
        let json =
            #"{"tenants":[{"id":"ten_1","name":"acme","createdAt":1,"quota":"{}","hostUid":900000000}],"retiredNames":[],"tokens":["#
            + tokens.joined(separator: ",")
            + #"],"apps":[],"writes":[],"nodes":[{"nodeId":"node-1","advertisedUrl":"http://10.0.0.1:8080","seenAt":1}],"peerSecret":"agt_s"}"#
        guard let tables = try? JSONDecoder().decode(ControlTables.self, from: Data(json.utf8)) else {
            Issue.record("the tables do not read")
            return
        }
        #expect(tables.count == 6_002 && tables.peerSecret == "agt_s")
        let records = ControlSnapshots.records(of: tables, clusterID: "cl_1", covers: 42)
        #expect(records.count > 1)
        var parts: [ControlTables] = []
        for (index, record) in records.enumerated() {
            let bytes = record.encoded()
            #expect(bytes.count < 1_000_000, "part \(index) is \(bytes.count) bytes")
            guard case .snapshot(let part) = (try? ControlRecord(decoding: bytes))?.change else {
                Issue.record("part \(index) does not read back")
                return
            }
            #expect(part.part == index && part.parts == records.count && part.covers == 42 && part.clusterId == "cl_1")
            parts.append(part.tables)
        }
        #expect(ControlSnapshots.joined(parts) == tables)
    }
}
