import AeroGridCore
import AeroGridRuntime
import AeroGridStore
import Foundation
import Testing

@Suite struct GridStateTests {
    func batch(_ updates: [(String, GridKey, GridRow?)], offsets: [(String, Int32, Int64)], records: Int) -> GridState.Batch {
        var batch = GridState.Batch()
        batch.updates = updates.map { (grid: $0.0, key: $0.1, row: $0.2) }
        for (topic, partition, offset) in offsets { batch.offsets[SourcePartition(topic: topic, partition: partition)] = offset }
        batch.records = records
        return batch
    }

    @Test func aBatchChangesRowsVersionsAndOffsetsTogether() {
        let state = GridState()
        state.declare([("sums", ["units"])])
        state.apply(
            batch(
                [("sums", .string("a"), ["units": .int(1)]), ("sums", .string("b"), ["units": .int(2)])],
                offsets: [("orders", 0, 10)], records: 10))
        state.apply(batch([("sums", .string("a"), nil)], offsets: [("orders", 0, 12), ("orders", 1, 3)], records: 5))
        let snapshot = state.snapshot("sums")
        #expect(snapshot?.grid.rows == [.string("b"): ["units": .int(2)]])
        #expect(snapshot?.grid.version == 2)
        #expect(state.offsets == [SourcePartition(topic: "orders", partition: 0): 12, SourcePartition(topic: "orders", partition: 1): 3])
        #expect(state.appliedRecords == 15)
    }

    @Test func aCheckpointDeltaHoldsOnlyWhatChangedAndAFailedOneComesBack() {
        let state = GridState()
        state.apply(batch([("g", .int(1), ["c": .int(1)])], offsets: [("t", 0, 1)], records: 1))
        let first = state.takeCheckpointDelta()
        #expect(first.rows == ["g": [.int(1): ["c": .int(1)]]])
        #expect(first.offsets == [SourcePartition(topic: "t", partition: 0): 1])
        #expect(state.takeCheckpointDelta().isEmpty)
        // A write that failed is put back; a newer change to the same key wins.
        state.apply(batch([("g", .int(1), ["c": .int(2)])], offsets: [("t", 0, 2)], records: 1))
        let failed = state.takeCheckpointDelta()
        state.apply(batch([("g", .int(1), ["c": .int(3)])], offsets: [("t", 0, 3)], records: 1))
        state.reinstate(failed)
        let retry = state.takeCheckpointDelta()
        #expect(retry.rows["g"]?[.int(1)] == .some(["c": .int(3)]))
        #expect(retry.offsets[SourcePartition(topic: "t", partition: 0)] == 3)
    }

    @Test func aQuotaRefusesGrowthButLetsAGridOverALoweredQuotaShrink() {
        let state = GridState()
        let three = batch([("g", .int(1), ["c": .int(1)]), ("g", .int(2), ["c": .int(1)]), ("g", .int(3), ["c": .int(1)])], offsets: [], records: 3)
        #expect(state.apply(three, maxRows: 3) == nil)
        #expect(state.apply(batch([("g", .int(4), ["c": .int(1)])], offsets: [], records: 1), maxRows: 3)?.contains("the quota is 3") == true)
        #expect(state.footprint.rows == 3, "the refused batch changed nothing")
        // The quota is lowered to 1: deleting a row still applies.
        #expect(state.apply(batch([("g", .int(1), nil)], offsets: [], records: 1), maxRows: 1) == nil)
        #expect(state.footprint.rows == 2)
    }

    @Test func watchersGetEachBatchsChangedRowsWithVersionAndEpoch() async {
        let state = GridState()
        state.restore(GridCheckpoint(), epoch: 4)
        let changes = state.changes()
        state.apply(batch([("g", .string("k"), ["c": .bool(true)])], offsets: [], records: 1))
        var iterator = changes.makeAsyncIterator()
        let change = await iterator.next()
        #expect(change?.grid == "g" && change?.version == 1 && change?.epoch == 4)
        #expect(change?.rows.first?.0 == .string("k"))
    }
}
