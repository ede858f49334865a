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
    public let headers: [KafkaHeader]

    public init(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader]) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
    }

}

public struct LogMessage: Sendable, Equatable, Decodable {
    public let level: String
    public let message: String

    enum CodingKeys: String, CodingKey { case level, message }

    public init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        level = try fields.decodeIfPresent(String.self, forKey: .level) ?? "info"
        message = try fields.decode(String.self, forKey: .message)
    }
}

/// A record the app could not decode or whose handler raised.
public struct RecordError: Sendable, Equatable, Decodable {
    public let batch: UInt64
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let kind: String
    public let handler: String?
    public let error: String
    public let traceback: String

    enum CodingKeys: String, CodingKey { case batch, topic, partition, offset, kind, handler, error, traceback }

    public init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        batch = try fields.decode(UInt64.self, forKey: .batch)
        topic = try fields.decode(String.self, forKey: .topic)
        partition = try fields.decode(Int32.self, forKey: .partition)
        offset = try fields.decode(Int64.self, forKey: .offset)
        kind = try fields.decode(String.self, forKey: .kind)
        handler = try fields.decodeIfPresent(String.self, forKey: .handler)
        error = try fields.decode(String.self, forKey: .error)
        traceback = try fields.decodeIfPresent(String.self, forKey: .traceback) ?? ""
    }
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
        case .hello: return .hello(try decodeJSON(HelloFrame.self, payload, "hello").hello)
        case .gridUpdate: return .gridUpdate(try decodeGridUpdate(try jsonObject(payload, "grid-update")))
        case .batchDone:
            var reader = BinaryReader(payload, frame: "batch-done")
            let done = BatchDone(
                batchID: try reader.u64(), records: try reader.u32(), errors: try reader.u32(), updates: try reader.u32(), produced: try reader.u32())
            try reader.expectEnd()
            return .batchDone(done)
        case .produce:
            var reader = BinaryReader(payload, frame: "produce")
            let topic = try reader.string16()
            let (key, value, headers) = try reader.keyValueHeaders()
            try reader.expectEnd()
            return .produce(ProduceRequest(topic: topic, key: key, value: value, headers: headers))
        case .log: return .log(try decodeJSON(LogMessage.self, payload, "log"))
        case .error: return .error(try decodeJSON(RecordError.self, payload, "error"))
        case .heartbeat:
            return .heartbeat
        case .restore, .restoreDone, .records, .shutdown:
            throw ProtocolViolation("the app sent a supervisor-only frame (type 0x\(String(type, radix: 16)))")
        }
    }

    /// A control frame's JSON as `type`; a violation names the field to fix.
    private static func decodeJSON<T: Decodable>(_ type: T.Type, _ payload: ArraySlice<UInt8>, _ frame: String) throws(ProtocolViolation) -> T {
        func field(_ path: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            (path + (last.map { [$0] } ?? [])).map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        func kind(_ type: Any.Type) -> String {
            switch type {
            case is String.Type: "a string"
            case is Bool.Type: "true or false"
            case is any BinaryInteger.Type: "an integer"
            case is any BinaryFloatingPoint.Type: "a number"
            case is any Collection.Type: "a list"
            default: "an object"
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(payload))
        } catch DecodingError.keyNotFound(let key, let context) {
            throw ProtocolViolation("the \(frame) frame needs '\(field(context.codingPath, key))'")
        } catch DecodingError.valueNotFound(let type, let context) {
            throw ProtocolViolation("the \(frame) frame needs \(kind(type)) '\(field(context.codingPath))', not null")
        } catch DecodingError.typeMismatch(let type, let context) {
            if context.codingPath.isEmpty { throw ProtocolViolation("the \(frame) frame is not a JSON object") }
            throw ProtocolViolation("the \(frame) frame needs \(kind(type)) '\(field(context.codingPath))'")
        } catch {
            throw ProtocolViolation("the \(frame) frame is not valid JSON")
        }
    }

    /// Grid updates are read with JSONSerialization, not `Decodable`: a cell keeps the JSON
    /// type it was written with (1 stays an integer, 1.0 a double), which only
    /// JSONSerialization's tagged numbers tell apart.
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

    private static func decodeGridUpdate(_ object: [String: Any]) throws(ProtocolViolation) -> GridUpdate {
        guard let grid = object["grid"] as? String else { throw ProtocolViolation("the grid-update frame needs a string 'grid'") }
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

/// The `hello` frame as the SDK writes it (docs/ipc.md).
private struct HelloFrame: Decodable {
    /// A key or value type: a name ("str", "int" …) or a record `{"record": name}`;
    /// informational, so anything else reads as "?".
    struct TypeName: Decodable {
        let name: String

        init(from decoder: any Decoder) throws {
            struct Record: Decodable { let record: String }
            let value = try decoder.singleValueContainer()
            name = (try? value.decode(String.self)) ?? (try? value.decode(Record.self).record) ?? "?"
        }
    }

    struct Topic: Decodable {
        let name: String
        let keyType: TypeName?
        let valueType: TypeName?

        enum CodingKeys: String, CodingKey {
            case name
            case keyType = "key_type"
            case valueType = "value_type"
        }
    }

    struct Grid: Decodable {
        let name: String
        let columns: [String]?
    }

    struct Stream: Decodable {
        let name: String
        let topic: String
    }

    let protocolVersion: String
    let sdk: String?
    let app: String
    let topics: [Topic]?
    let grids: [Grid]?
    let streams: [Stream]?
    let produces: [String]?

    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol"
        case sdk, app, topics, grids, streams, produces
    }

    var hello: Hello {
        Hello(
            protocolVersion: protocolVersion, sdk: sdk ?? "", app: app,
            topics: (topics ?? []).map { Hello.Topic(name: $0.name, keyType: $0.keyType?.name ?? "?", valueType: $0.valueType?.name ?? "?") },
            grids: (grids ?? []).map { Hello.Grid(name: $0.name, columns: $0.columns ?? []) },
            streams: (streams ?? []).map { Hello.Stream(name: $0.name, topic: $0.topic) },
            produces: produces ?? [])
    }
}
