public import AeroGridCore
import Foundation

/// What the app declares in its `hello` frame.
public struct Hello: Sendable, Equatable {
    public struct Topic: Sendable, Equatable {
        public let name: String
        /// `"str"`, `"bytes"`, `"int"` … or a record's name: informational.
        public let keyType: String
        public let valueType: String

        public init(name: String, keyType: String, valueType: String) {
            self.name = name
            self.keyType = keyType
            self.valueType = valueType
        }
    }

    public struct Grid: Sendable, Equatable {
        public let name: String
        public let columns: [String]

        public init(name: String, columns: [String]) {
            self.name = name
            self.columns = columns
        }
    }

    public struct Stream: Sendable, Equatable {
        public let name: String
        public let topic: String

        public init(name: String, topic: String) {
            self.name = name
            self.topic = topic
        }
    }

    public let protocolVersion: String
    public let sdk: String
    public let app: String
    public let topics: [Topic]
    public let grids: [Grid]
    public let streams: [Stream]
    public let produces: [String]

    /// The topics whose partitions the app consumes: the distinct topics of its streams.
    public var consumedTopics: [String] {
        var seen = Set<String>()
        return streams.map(\.topic).filter { seen.insert($0).inserted }
    }

    public init(protocolVersion: String, sdk: String, app: String, topics: [Topic], grids: [Grid], streams: [Stream], produces: [String]) {
        self.protocolVersion = protocolVersion
        self.sdk = sdk
        self.app = app
        self.topics = topics
        self.grids = grids
        self.streams = streams
        self.produces = produces
    }
}

/// One changed row of one grid; `row == nil` deletes it.
public struct GridUpdate: Sendable, Equatable {
    public let grid: String
    public let key: GridKey
    public let row: GridRow?

    public init(grid: String, key: GridKey, row: GridRow?) {
        self.grid = grid
        self.key = key
        self.row = row
    }
}

public struct BatchDone: Sendable, Equatable {
    public let batchID: UInt64
    public let records: UInt32
    public let errors: UInt32
    public let updates: UInt32
    public let produced: UInt32

    public init(batchID: UInt64, records: UInt32, errors: UInt32, updates: UInt32, produced: UInt32) {
        self.batchID = batchID
        self.records = records
        self.errors = errors
        self.updates = updates
        self.produced = produced
    }
}

public struct ProduceRequest: Sendable, Equatable {
    public let topic: String
    public let key: [UInt8]?
    public let value: [UInt8]?
    public let headers: [(String, [UInt8]?)]

    public init(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [(String, [UInt8]?)]) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
    }

    public static func == (lhs: ProduceRequest, rhs: ProduceRequest) -> Bool {
        lhs.topic == rhs.topic && lhs.key == rhs.key && lhs.value == rhs.value
            && lhs.headers.map(\.0) == rhs.headers.map(\.0) && lhs.headers.map(\.1) == rhs.headers.map(\.1)
    }
}

public struct LogMessage: Sendable, Equatable {
    public let level: String
    public let message: String
}

/// A record the app could not decode or whose handler raised.
public struct RecordError: Sendable, Equatable {
    public let batch: UInt64
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let kind: String
    public let handler: String?
    public let error: String
    public let traceback: String
}

/// A frame received from the app.
public enum AppFrame: Sendable, Equatable {
    case hello(Hello)
    case gridUpdate(GridUpdate)
    case batchDone(BatchDone)
    case produce(ProduceRequest)
    case log(LogMessage)
    case error(RecordError)
    case heartbeat
    /// A frame type this version does not know: skipped (minor versions may add some).
    case unknown(UInt8)
}

extension AppFrame {
    /// Decodes one frame's payload by its type.
    public static func decode(type: UInt8, payload: ArraySlice<UInt8>) throws(ProtocolViolation) -> AppFrame {
        guard let known = FrameType(rawValue: type) else { return .unknown(type) }
        switch known {
        case .hello: return .hello(try decodeHello(try jsonObject(payload, "hello")))
        case .gridUpdate: return .gridUpdate(try decodeGridUpdate(try jsonObject(payload, "grid-update")))
        case .batchDone:
            var reader = BinaryReader(payload, frame: "batch-done")
            let done = BatchDone(batchID: try reader.u64(), records: try reader.u32(), errors: try reader.u32(), updates: try reader.u32(), produced: try reader.u32())
            try reader.expectEnd()
            return .batchDone(done)
        case .produce:
            var reader = BinaryReader(payload, frame: "produce")
            let topic = try reader.string16()
            let (key, value, headers) = try reader.keyValueHeaders()
            try reader.expectEnd()
            return .produce(ProduceRequest(topic: topic, key: key, value: value, headers: headers))
        case .log:
            let object = try jsonObject(payload, "log")
            return .log(LogMessage(level: object["level"] as? String ?? "info", message: try string(object, "message", "log")))
        case .error:
            let object = try jsonObject(payload, "error")
            guard let batch = (object["batch"] as? NSNumber)?.uint64Value, let partition = (object["partition"] as? NSNumber)?.int32Value,
                  let offset = (object["offset"] as? NSNumber)?.int64Value else {
                throw ProtocolViolation("an error frame needs batch, partition and offset numbers")
            }
            return .error(RecordError(
                batch: batch, topic: try string(object, "topic", "error"), partition: partition, offset: offset,
                kind: try string(object, "kind", "error"), handler: object["handler"] as? String,
                error: try string(object, "error", "error"), traceback: object["traceback"] as? String ?? ""))
        case .heartbeat:
            return .heartbeat
        case .restore, .restoreDone, .records, .shutdown:
            throw ProtocolViolation("the app sent a supervisor-only frame (type 0x\(String(type, radix: 16)))")
        }
    }

    private static func jsonObject(_ payload: ArraySlice<UInt8>, _ frame: String) throws(ProtocolViolation) -> [String: Any] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(payload))
        } catch {
            throw ProtocolViolation("the \(frame) frame is not valid JSON")
        }
        guard let dictionary = object as? [String: Any] else { throw ProtocolViolation("the \(frame) frame is not a JSON object") }
        return dictionary
    }

    private static func string(_ object: [String: Any], _ key: String, _ frame: String) throws(ProtocolViolation) -> String {
        guard let value = object[key] as? String else { throw ProtocolViolation("the \(frame) frame needs a string '\(key)'") }
        return value
    }

    private static func decodeHello(_ object: [String: Any]) throws(ProtocolViolation) -> Hello {
        func list(_ key: String) throws(ProtocolViolation) -> [[String: Any]] {
            guard let array = (object[key] ?? [Any]()) as? [Any] else { throw ProtocolViolation("hello.\(key) must be an array") }
            var result: [[String: Any]] = []
            for element in array {
                guard let dictionary = element as? [String: Any] else { throw ProtocolViolation("hello.\(key) must hold objects") }
                result.append(dictionary)
            }
            return result
        }
        func typeName(_ value: Any?) -> String {
            if let text = value as? String { return text }
            if let record = value as? [String: Any], let name = record["record"] as? String { return name }
            return "?"
        }
        let topics = try list("topics").map { topic throws(ProtocolViolation) in
            Hello.Topic(name: try string(topic, "name", "hello topic"), keyType: typeName(topic["key_type"]), valueType: typeName(topic["value_type"]))
        }
        let grids = try list("grids").map { grid throws(ProtocolViolation) in
            Hello.Grid(name: try string(grid, "name", "hello grid"), columns: grid["columns"] as? [String] ?? [])
        }
        let streams = try list("streams").map { stream throws(ProtocolViolation) in
            Hello.Stream(name: try string(stream, "name", "hello stream"), topic: try string(stream, "topic", "hello stream"))
        }
        return Hello(
            protocolVersion: try string(object, "protocol", "hello"), sdk: object["sdk"] as? String ?? "",
            app: try string(object, "app", "hello"), topics: topics, grids: grids, streams: streams,
            produces: object["produces"] as? [String] ?? [])
    }

    private static func decodeGridUpdate(_ object: [String: Any]) throws(ProtocolViolation) -> GridUpdate {
        let grid = try string(object, "grid", "grid-update")
        let key: GridKey
        switch object["key"] {
        case let text as String: key = .string(text)
        case let number as NSNumber where !["d", "f", "c", "B"].contains(String(cString: number.objCType)): key = .int(number.int64Value)
        default: throw ProtocolViolation("a grid-update key must be a string or an integer")
        }
        guard let rowValue = object["row"] else { throw ProtocolViolation("a grid-update needs 'row' (null to delete)") }
        if rowValue is NSNull { return GridUpdate(grid: grid, key: key, row: nil) }
        guard let cells = rowValue as? [String: Any] else { throw ProtocolViolation("a grid-update row must be an object or null") }
        var row: GridRow = [:]
        for (column, value) in cells {
            guard let cell = GridValue(json: value) else {
                throw ProtocolViolation("grid '\(grid)' column '\(column)': a cell holds a string, a number, true/false or null")
            }
            row[column] = cell
        }
        return GridUpdate(grid: grid, key: key, row: row)
    }
}
