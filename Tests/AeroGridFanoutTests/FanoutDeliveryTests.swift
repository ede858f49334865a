import AeroGridCore
import AeroGridFanout
import AeroGridRuntime
import Foundation
import Synchronization
import Testing

/// What a subscriber receives: a snapshot, then deltas that keep its copy of the grid
/// exact; fewer messages, never a wrong copy, when it reads slowly (conflation and
/// catch-up through its cursor); a fresh snapshot in the new epoch when its app's runner is
/// replaced and the hub is told (resync).
@Suite struct FanoutDeliveryTests {
    /// The grids a hub serves, replaceable as a supervisor replaces a runner.
    final class Source: Sendable {
        let current: Mutex<GridState>
        init(_ grids: GridState) { current = Mutex(grids) }
        var grids: GridState { current.withLock { $0 } }
    }

    private func grids(epoch: Int64) -> GridState {
        let grids = GridState()
        grids.restore(.init(), epoch: epoch)
        grids.declare([("g", ["price", "size"])])
        return grids
    }

    private func apply(_ grids: GridState, _ updates: [(GridKey, GridRow?)]) {
        var batch = GridState.Batch()
        batch.updates = updates.map { ("g", $0.0, $0.1) }
        grids.apply(batch)
    }

    /// Waits until `condition` holds, up to 5 s.
    private func eventually(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    @Test func aSubscriberGetsASnapshotThenDeltasThatKeepItsCopyExact() async throws {
        let grids = grids(epoch: 1)
        apply(grids, [(.string("a"), ["price": .double(1.5), "size": .int(10)])])
        let hub = FanoutHub { _, _ in grids }
        let client = ClientCopy()
        let connection = client.connection()
        let writer = Task { await connection.run() }
        defer { writer.cancel() }
        try hub.subscribe(connection, id: "s", app: "app", grid: "g", filter: .init(), rate: 50)
        try await eventually { client.types.contains("snapshot") }

        apply(grids, [(.string("b"), ["price": .int(2)])])
        apply(grids, [(.string("a"), ["size": .int(11)])])
        apply(grids, [(.string("b"), nil), (.int(7), ["price": .string("x")])])
        // An update is the whole row: "a" is now only its size.
        let expected: [String: [String: String]] = ["a": ["size": "11"], "7": ["price": "x"]]
        try await eventually { client.rows == expected && client.version == 4 }
        #expect(client.rows == expected)
        #expect(client.types.first == "snapshot" && client.types.dropFirst().allSatisfy { $0 == "delta" }, "\(client.types)")
        #expect(client.version == 4 && client.epoch == 1)
        hub.disconnect(connection)
    }

    @Test func aSlowReaderGetsFewerMessagesAndStillTheExactGrid() async throws {
        let grids = grids(epoch: 1)
        let hub = FanoutHub { _, _ in grids }
        // Each message takes 100 ms to write: 200 changes at once cannot each be sent.
        let client = ClientCopy(writeTime: .milliseconds(100))
        let connection = client.connection()
        let writer = Task { await connection.run() }
        defer { writer.cancel() }
        try hub.subscribe(connection, id: "s", app: "app", grid: "g", filter: .init(), rate: 50)
        try await eventually { client.types.contains("snapshot") }
        for round in 1...200 {
            apply(grids, [(.string("k\(round % 7)"), ["price": .int(Int64(round))])])
        }
        let expected = Dictionary(uniqueKeysWithValues: (194...200).map { ("k\($0 % 7)", ["price": "\($0)"]) })
        try await eventually { client.version == 200 }
        #expect(client.rows == expected)
        #expect(client.version == 200)
        #expect(client.types.count < 50, "\(client.types.count) messages for 200 changes: not conflated")
        hub.disconnect(connection)
    }

    @Test func aReplacedRunnerIsAResyncInItsNewEpoch() async throws {
        let source = Source(grids(epoch: 1))
        apply(source.grids, [(.string("old"), ["price": .int(1)])])
        let hub = FanoutHub { _, _ in source.grids }
        let client = ClientCopy()
        let connection = client.connection()
        let writer = Task { await connection.run() }
        defer { writer.cancel() }
        try hub.subscribe(connection, id: "s", app: "app", grid: "g", filter: .init(), rate: 50)
        try await eventually { client.rows == ["old": ["price": "1"]] }

        let restarted = grids(epoch: 2)
        apply(restarted, [(.string("new"), ["price": .int(2)])])
        source.current.withLock { $0 = restarted }
        // Not told: the feed still follows the old runner's grids.
        try await Task.sleep(for: .milliseconds(300))
        #expect(client.epoch == 1)
        hub.refresh(tenant: "a", app: "app")
        try await eventually { client.epoch == 2 }
        #expect(client.rows == ["new": ["price": "2"]])
        #expect(client.types.last == "snapshot")
        // Another app's refresh does not touch this feed.
        let sent = client.types.count
        hub.refresh(tenant: "a", app: "other")
        try await Task.sleep(for: .milliseconds(200))
        #expect(client.types.count == sent)
        hub.disconnect(connection)
    }
}

/// A client's copy of one subscription's grid, built from the messages it is sent the way
/// docs/protocol.md says a client builds it. Cells are kept as their JSON text.
final class ClientCopy: Sendable {
    private struct Copy {
        var types: [String] = []
        var rows: [String: [String: String]] = [:]
        var version: Int64 = 0
        var epoch: Int64 = 0
    }
    private let copy = Mutex(Copy())
    private let writeTime: Duration

    init(writeTime: Duration = .zero) {
        self.writeTime = writeTime
    }

    var types: [String] { copy.withLock { $0.types } }
    var rows: [String: [String: String]] { copy.withLock { $0.rows } }
    var version: Int64 { copy.withLock { $0.version } }
    var epoch: Int64 { copy.withLock { $0.epoch } }

    func connection() -> StreamConnection {
        StreamConnection(
            tenant: "a", tenantID: "ten_a",
            send: { [self] bytes in
                if writeTime > .zero { try await Task.sleep(for: writeTime) }
                receive(bytes)
            }, disconnect: { _ in })
    }

    private func receive(_ bytes: [UInt8]) {
        guard let message = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let type = message["type"] as? String
        else { return }
        copy.withLock { copy in
            copy.types.append(type)
            guard type == "snapshot" || type == "delta" else { return }
            if type == "snapshot" { copy.rows = [:] }
            for case let pair as [Any] in message["rows"] as? [Any] ?? [] where pair.count == 2 {
                let key = "\(pair[0])"
                if let cells = pair[1] as? [String: Any] {
                    for (column, value) in cells {
                        copy.rows[key, default: [:]][column] = value is NSNull ? nil : "\(value)"
                    }
                } else {
                    copy.rows[key] = nil
                }
            }
            copy.version = (message["version"] as? NSNumber)?.int64Value ?? copy.version
            copy.epoch = (message["epoch"] as? NSNumber)?.int64Value ?? copy.epoch
        }
    }
}
