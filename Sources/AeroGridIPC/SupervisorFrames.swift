public import AeroGridCore
import Foundation

/// Encodes the frames the supervisor sends to an app.
public enum SupervisorFrames {
    public static func frame(_ type: FrameType, payload: [UInt8] = []) -> [UInt8] {
        var writer = BinaryWriter(capacity: payload.count + 5)
        writer.u32(UInt32(payload.count + 1))
        writer.u8(type.rawValue)
        writer.raw(payload)
        return writer.bytes
    }

    public static let heartbeat = frame(.heartbeat)
    public static let restoreDone = frame(.restoreDone)

    public static func shutdown(reason: String) -> [UInt8] {
        var payload = JSONWriter(capacity: reason.utf8.count + 16)
        payload.raw("{\"reason\":")
        payload.string(reason)
        payload.raw("}")
        return frame(.shutdown, payload: payload.bytes)
    }

    /// Restore frames for one grid's rows, split so each stays well under the frame limit.
    /// Written with `JSONWriter` so a double the app wrote comes back a double (`4.0`, not `4`).
    public static func restore(grid: String, rows: [(GridKey, GridRow)], maxPayload: Int = 1 << 20) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var chunk = JSONWriter()
        var count = 0
        func flush() {
            guard count > 0 else { return }
            var payload = JSONWriter(capacity: chunk.bytes.count + grid.utf8.count + 24)
            payload.raw("{\"grid\":")
            payload.string(grid)
            payload.raw(",\"rows\":[")
            payload.raw(chunk.bytes)
            payload.raw("]}")
            frames.append(frame(.restore, payload: payload.bytes))
            chunk = JSONWriter()
            count = 0
        }
        for (key, row) in rows {
            if count > 0 { chunk.raw(",") }
            chunk.raw("[")
            chunk.key(key)
            chunk.raw(",")
            chunk.row(row, columns: nil)
            chunk.raw("]")
            count += 1
            if chunk.bytes.count >= maxPayload { flush() }
        }
        flush()
        return frames
    }
}

/// Builds a `records` frame: batch id, a topic table, then each record with its fixed
/// 32-byte head (`>HiqqiiH`), key, value and headers.
public struct RecordsFrameBuilder {
    private var topics: [String: UInt16] = [:]
    private var topicOrder: [String] = []
    private var lastTopic: (name: String, index: UInt16)?
    private var body = BinaryWriter()
    public private(set) var count: UInt32 = 0

    public init(expectedBytes: Int = 1 << 16) {
        body = BinaryWriter(capacity: expectedBytes)
    }

    /// Bytes of record data so far, to cut batches by size.
    public var byteCount: Int { body.bytes.count }

    public mutating func append(
        topic: String, partition: Int32, offset: Int64, timestamp: Int64?,
        key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []
    ) {
        // Arrays: lend their storage to the buffer form.
        withOptionalBuffer(key) { keyBytes in
            withOptionalBuffer(value) { valueBytes in
                append(topic: topic, partition: partition, offset: offset, timestamp: timestamp, key: keyBytes, value: valueBytes, headers: headers)
            }
        }
    }

    /// Appends one record from borrowed bytes (a Kafka client's buffers, say).
    public mutating func append(
        topic: String, partition: Int32, offset: Int64, timestamp: Int64?,
        key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, headers: [KafkaHeader] = []
    ) {
        let index = topicIndex(topic)
        body.u16(index)
        body.i32(partition)
        body.i64(offset)
        body.i64(timestamp ?? -1)
        body.i32(key.map { Int32($0.count) } ?? -1)
        body.i32(value.map { Int32($0.count) } ?? -1)
        body.u16(UInt16(headers.count))
        body.raw(key)
        body.raw(value)
        for header in headers {
            body.string16(header.name)
            body.i32(header.value.map { Int32($0.count) } ?? -1)
            body.raw(header.value)
        }
        count += 1
    }

    /// A topic's index in the frame's table; consecutive records of one topic skip the
    /// dictionary.
    private mutating func topicIndex(_ topic: String) -> UInt16 {
        if let last = lastTopic, last.name == topic { return last.index }
        let index: UInt16
        if let known = topics[topic] {
            index = known
        } else {
            index = UInt16(topicOrder.count)
            topics[topic] = index
            topicOrder.append(topic)
        }
        lastTopic = (topic, index)
        return index
    }

    /// The complete frame for `batchID`.
    public func frame(batchID: UInt64) -> [UInt8] {
        var head = BinaryWriter(capacity: 64)
        head.u64(batchID)
        head.u16(UInt16(topicOrder.count))
        for topic in topicOrder { head.string16(topic) }
        head.u32(count)
        var frame = BinaryWriter(capacity: head.bytes.count + body.bytes.count + 5)
        frame.u32(UInt32(head.bytes.count + body.bytes.count + 1))
        frame.u8(FrameType.records.rawValue)
        frame.raw(head.bytes)
        frame.raw(body.bytes)
        return frame.bytes
    }
}

private func withOptionalBuffer<T>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

/// Reads a `records` frame back: for the supervisor's dead letters (the original record of
/// a failed one) and for tests.
public enum RecordsFrameReader {
    /// The records of a complete frame (length and type included), in order.
    public static func records(in frame: [UInt8]) throws(ProtocolViolation) -> (batchID: UInt64, records: [KafkaRecord]) {
        guard frame.count >= 5, frame[4] == FrameType.records.rawValue else { throw ProtocolViolation("not a records frame") }
        var reader = BinaryReader(frame[5...], frame: "records")
        let batchID = try reader.u64()
        var topics: [String] = []
        for _ in 0..<(try reader.u16()) { topics.append(try reader.string16()) }
        var records: [KafkaRecord] = []
        for _ in 0..<(try reader.u32()) {
            let topicIndex = Int(try reader.u16())
            guard topicIndex < topics.count else { throw ProtocolViolation("a topic index outside the table") }
            let partition = try reader.i32()
            let offset = Int64(bitPattern: try reader.u64())
            let timestamp = Int64(bitPattern: try reader.u64())
            let (key, value, headers) = try reader.keyValueHeaders()
            records.append(
                KafkaRecord(
                    topic: topics[topicIndex], partition: partition, offset: offset,
                    timestamp: timestamp >= 0 ? timestamp : nil, key: key, value: value, headers: headers))
        }
        try reader.expectEnd()
        return (batchID, records)
    }
}
