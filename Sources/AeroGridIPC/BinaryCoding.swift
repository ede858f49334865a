public import AeroGridCore

/// Reads the big-endian fields of a binary payload, refusing truncation.
struct BinaryReader {
    private let bytes: ArraySlice<UInt8>
    private var position: Int
    private let frame: String

    init(_ bytes: ArraySlice<UInt8>, frame: String) {
        self.bytes = bytes
        self.position = bytes.startIndex
        self.frame = frame
    }

    private mutating func take(_ count: Int) throws(ProtocolViolation) -> ArraySlice<UInt8> {
        guard count >= 0, bytes.endIndex - position >= count else { throw ProtocolViolation("the \(frame) frame is truncated") }
        defer { position += count }
        return bytes[position..<position + count]
    }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(ProtocolViolation) -> T {
        var value: T = 0
        for byte in try take(MemoryLayout<T>.size) { value = value << 8 | T(byte) }
        return value
    }

    mutating func u16() throws(ProtocolViolation) -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws(ProtocolViolation) -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws(ProtocolViolation) -> UInt64 { try integer(UInt64.self) }
    mutating func i32() throws(ProtocolViolation) -> Int32 { Int32(bitPattern: try u32()) }

    mutating func string16() throws(ProtocolViolation) -> String {
        String(decoding: try take(Int(try u16())), as: UTF8.self)
    }

    /// A `bytes?` field whose length came before: -1 is null.
    mutating func bytes(length: Int32) throws(ProtocolViolation) -> [UInt8]? {
        if length == -1 { return nil }
        guard length >= 0 else { throw ProtocolViolation("the \(frame) frame has a negative length") }
        return Array(try take(Int(length)))
    }

    /// The tail that records and produce frames share: `i32 key_len, i32 value_len,
    /// u16 header_count`, then the key, the value and each header.
    mutating func keyValueHeaders() throws(ProtocolViolation) -> (key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader]) {
        let keyLength = try i32()
        let valueLength = try i32()
        let headerCount = try u16()
        let key = try bytes(length: keyLength)
        let value = try bytes(length: valueLength)
        var headers: [KafkaHeader] = []
        for _ in 0..<headerCount {
            let name = try string16()
            headers.append(KafkaHeader(name, try bytes(length: try i32())))
        }
        return (key, value, headers)
    }

    func expectEnd() throws(ProtocolViolation) {
        guard position == bytes.endIndex else { throw ProtocolViolation("the \(frame) frame has trailing bytes") }
    }
}

/// Appends big-endian fields to a buffer.
struct BinaryWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    @inline(__always) mutating func u8(_ value: UInt8) { bytes.append(value) }
    // Each integer goes in with one append of its big-endian bytes.
    @inline(__always) mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    @inline(__always) mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    @inline(__always) mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    @inline(__always) mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }
    @inline(__always) mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }

    mutating func string16(_ text: String) {
        let utf8 = Array(text.utf8)
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Length as i32 (-1 for nil) is written by the caller where the layout puts it.
    mutating func raw(_ data: [UInt8]?) {
        if let data { bytes.append(contentsOf: data) }
    }

    mutating func raw(_ data: UnsafeRawBufferPointer?) {
        if let data, data.count > 0 { bytes.append(contentsOf: data) }
    }
}

/// Splits a byte stream into frames. Bytes go in as they arrive; complete frames come out.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame (type and payload), nil until more bytes arrive.
    public mutating func next() throws(ProtocolViolation) -> (type: UInt8, payload: ArraySlice<UInt8>)? {
        let available = buffer.count - start
        guard available >= 5 else {
            compact()
            return nil
        }
        let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard length >= 1 && length <= IPCLimits.maxFrameLength else {
            throw ProtocolViolation("a frame length of \(length) bytes (allowed: 1 to \(IPCLimits.maxFrameLength))")
        }
        guard available >= 4 + length else {
            compact()
            return nil
        }
        let type = buffer[start + 4]
        let payload = buffer[(start + 5)..<(start + 4 + length)]
        start += 4 + length
        return (type, payload)
    }

    /// Drops consumed bytes once they are most of the buffer, so it stays small.
    private mutating func compact() {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
    }
}
