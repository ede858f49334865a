import AeroGridCore
import AeroGridRuntime
import Synchronization
import Testing

@testable import AeroGridFanout

/// What a viewer can make the fan-out do: subscriptions cost nothing while their grid does
/// not change, a tenant holds at most its quota of them, and replies a client does not read
/// are bounded in bytes.
@Suite struct FanoutBoundsTests {
    private func connection(sent: Sent = Sent(), disconnected: Sent = Sent(), tenantID: String = "ten_a") -> StreamConnection {
        StreamConnection(
            tenant: "a", tenantID: tenantID, send: { message in sent.add(message.count) },
            disconnect: { _ in disconnected.add(1) })
    }

    /// Before, each (rate, filter) group woke 50 times a second whether or not its grid
    /// changed: 2,000 idle subscriptions kept more than a core busy.
    @Test func idleSubscriptionsDoNotTick() async throws {
        let grids = GridState()
        grids.restore(.init(), epoch: 1)
        grids.declare([("g", ["c"])])
        let hub = FanoutHub { _, _ in grids }
        let client = connection()
        let writer = Task { await client.run() }
        defer { writer.cancel() }
        for index in 0..<1_000 {
            try hub.subscribe(client, id: "s\(index)", app: "app", grid: "g", filter: SubscriptionFilter(columns: ["c", "x\(index)"]), rate: 50)
        }
        try await Task.sleep(for: .seconds(1))
        #expect(hub.stats.tickCount == 0, "\(hub.stats.tickCount) ticks while nothing changed")

        var batch = GridState.Batch()
        batch.updates = [("g", .string("k"), ["c": .int(1)])]
        grids.apply(batch)
        try await Task.sleep(for: .milliseconds(500))
        #expect(hub.stats.tickCount >= 1_000 && hub.stats.tickCount <= 2_000, "one tick per group for one change, not \(hub.stats.tickCount)")
        let afterChange = hub.stats.tickCount
        try await Task.sleep(for: .milliseconds(500))
        #expect(hub.stats.tickCount == afterChange, "and none after it")
        hub.disconnect(client)
    }

    /// The change log of a watched grid is bounded in bytes as well as entries: an app
    /// chooses its keys (up to 1 KiB) and may change up to 1,024 columns a row (past 16, a
    /// row is logged as changed whole).
    @Test func aGridsChangeLogIsBoundedInBytes() async throws {
        let grids = GridState()
        grids.restore(.init(), epoch: 1)
        let columns = (0..<64).map { "column-number-\($0)" }
        grids.declare([("g", columns)])
        let hub = FanoutHub { _, _ in grids }
        let client = connection()
        try hub.subscribe(client, id: "s", app: "app", grid: "g", filter: SubscriptionFilter(keys: [.string("none")]), rate: 50)
        let feed = try #require(client.subscription("s")?.feed)
        for round in 0..<100 {
            var batch = GridState.Batch()
            batch.updates = (0..<50).map { index in
                (
                    "g", .string(String(repeating: "k", count: 1_000) + "\(index)"),
                    Dictionary(uniqueKeysWithValues: columns.map { ($0, GridValue.int(Int64(round))) })
                )
            }
            grids.apply(batch)
        }
        try await Task.sleep(for: .milliseconds(300))
        let (entries, bytes) = feed.state.withLock { ($0.log.count, $0.logBytes) }
        #expect(bytes <= 2 * GridFeed.logByteCapacity, "the log holds \(bytes) bytes in \(entries) entries")
        // It was filled (and trimmed), not left empty.
        #expect(bytes >= GridFeed.logByteCapacity / 2, "the log holds \(bytes) bytes in \(entries) entries")
        #expect(feed.state.withLock { $0.log.allSatisfy { ($0.columns?.count ?? 0) <= GridFeed.columnsLogged } })
        hub.disconnect(client)
    }

    @Test func aTenantHoldsAtMostItsQuotaOfSubscriptions() throws {
        let hub = FanoutHub { _, _ in nil }
        let first = connection()
        let second = connection()
        for index in 0..<6 { try hub.subscribe(first, id: "s\(index)", app: "app", grid: "g", filter: .init(), rate: 4, tenantLimit: 10) }
        for index in 0..<4 { try hub.subscribe(second, id: "s\(index)", app: "app", grid: "g", filter: .init(), rate: 4, tenantLimit: 10) }
        #expect(throws: FanoutHub.SubscribeError.overQuota(limit: 10)) {
            try hub.subscribe(second, id: "s99", app: "app", grid: "g", filter: .init(), rate: 4, tenantLimit: 10)
        }
        // Another tenant is not counted with this one.
        let other = connection(tenantID: "ten_b")
        try hub.subscribe(other, id: "s0", app: "app", grid: "g", filter: .init(), rate: 4, tenantLimit: 10)
        #expect(hub.unsubscribe(first, id: "s0"))
        try hub.subscribe(second, id: "s99", app: "app", grid: "g", filter: .init(), rate: 4, tenantLimit: 10)
        hub.disconnect(first)
        #expect(hub.subscriptionCount(tenantID: "ten_a") == 5)
    }

    /// A client that asks and never reads: past 1 MiB of waiting replies (queued or in the
    /// writer's hands) it is disconnected, where before 256 replies of up to 64 KiB each
    /// waited per connection.
    @Test func repliesAClientDoesNotReadAreBoundedInBytes() async throws {
        let disconnected = Sent()
        let stuck = StreamConnection(
            tenant: "a", tenantID: "ten_a",
            send: { _ in
                try await Task.sleep(for: .seconds(3600))  // the client never reads
            }, disconnect: { _ in disconnected.add(1) })
        let writer = Task { await stuck.run() }
        defer { writer.cancel() }
        let reply = [UInt8](repeating: UInt8(ascii: "x"), count: 4 << 10)
        // A hundred replies first, taken by the writer, which then waits on the client:
        // what it holds counts as much as what is queued.
        var sent = 0
        while sent < 100 {
            stuck.enqueue(reply)
            sent += 1
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while stuck.blockedFor == nil {
            try #require(ContinuousClock.now < deadline, "the writer never waited on the client")
            try await Task.sleep(for: .milliseconds(1))
        }
        while !stuck.isClosed && sent < 1_000 {
            stuck.enqueue(reply)
            sent += 1
        }
        #expect(stuck.isClosed)
        #expect(disconnected.total == 1)
        #expect(sent <= (stuck.replyBytes / reply.count) + 2, "closed after \(sent) replies of 4 KiB")
    }
}

final class Sent: Sendable {
    private let count = Mutex(0)
    func add(_ value: Int) { count.withLock { $0 += value } }
    var total: Int { count.withLock { $0 } }
}
