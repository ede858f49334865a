import AeroGridCore
import AeroGridIPC
import AeroGridStore
import Testing

@testable import AeroGridRuntime

@Suite struct BatchSinkTests {
    func record(_ offset: Int64, partition: Int32 = 0, bytes: Int = 10, headers: Int = 0) -> KafkaRecord {
        KafkaRecord(
            topic: "t", partition: partition, offset: offset, timestamp: nil, key: nil,
            value: [UInt8](repeating: 1, count: bytes), headers: (0..<headers).map { KafkaHeader("h\($0)", nil) })
    }

    @Test func aFrameStaysUnderItsBudgetAndTheRestWaitsInOrder() throws {
        let sink = BatchSink(expectedRecords: 10, carried: (0..<10).map { record($0, bytes: 100) }, budget: 500)
        #expect(sink.count == 3, "3 records of 132 bytes fit in 500")
        #expect(sink.overflow.map(\.offset) == Array(3..<10))
        let frame = sink.frame(batchID: 1)
        #expect(sink.offsets == [SourcePartition(topic: "t", partition: 0): 3], "the batch only moves past what it holds")
        #expect(try RecordsFrameReader.records(in: frame).records.map(\.offset) == [0, 1, 2])
    }

    @Test func aRecordNoFrameCanHoldIsSetAsideWithItsReason() {
        let sink = BatchSink(expectedRecords: 10, carried: [record(0), record(1, bytes: 10_000), record(2)], budget: 5_000)
        #expect(sink.count == 2)
        #expect(sink.unframeable.map(\.record.offset) == [1])
        #expect(sink.unframeable[0].reason.contains("does not fit in a records frame"))
        _ = sink.frame(batchID: 1)
        #expect(sink.offsets == [SourcePartition(topic: "t", partition: 0): 3], "past the record set aside too: it goes to the dead letters")
        // More headers than the format's u16 count, however large the budget.
        let many = BatchSink(expectedRecords: 1, carried: [record(0, headers: 70_000)], budget: 100 << 20)
        #expect(many.count == 0)
        #expect(many.unframeable.first?.reason.contains("headers") == true)
    }
}
