public import AeroGridCore
public import Foundation

/// The API's JSON: how its bodies are written and read.
///
/// Written with keys sorted and, unlike `JSONEncoder`, with every property present: a nil
/// is written as `null`. Every property of a response in openapi.json is required (null
/// where it may be null), and the generated types' synthesized `Codable` would leave a nil
/// out instead (swift-openapi-generator issue 934). Dates are ISO 8601 in UTC, to the
/// second; doubles in Swift's shortest round-trip form ("4.0", "0.1").
public enum APIJSON {
    public static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = TreeEncoder()
        // Every schema type encodes without error; a failure here is a programming error,
        // written as null rather than trapping the server.
        guard (try? value.encode(to: encoder)) != nil else { return Array("null".utf8) }
        var writer = JSONWriter(capacity: 256)
        encoder.root.write(to: &writer)
        return writer.bytes
    }

    /// A body the caller sent, as `type`. The error says where and what, to fix the body.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws(BodyError) -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(type, from: Data(bytes))
        } catch let error as DecodingError {
            throw BodyError(error)
        } catch {
            throw BodyError(message: "the body is not valid JSON")
        }
    }

    public static func time(_ date: Date) -> String { date.formatted(.iso8601) }
}

/// Why a request body could not be read, in words that say what to fix.
public struct BodyError: Error, Sendable {
    public let message: String

    init(message: String) { self.message = message }

    init(_ error: DecodingError) {
        func path(_ context: DecodingError.Context, _ last: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (last.map { [$0] } ?? [])
            return keys.isEmpty ? "the body" : "\"" + keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "\""
        }
        switch error {
        case .keyNotFound(let key, let context):
            message = "\(path(context, key)) is required"
        case .typeMismatch(let type, let context):
            message = "\(path(context)) must be \(Self.describe(type))"
        case .valueNotFound(let type, let context):
            message = "\(path(context)) must be \(Self.describe(type)), not null"
        case .dataCorrupted(let context):
            message = context.codingPath.isEmpty ? "the body must be a JSON object" : "\(path(context)) is not valid: \(context.debugDescription)"
        @unknown default:
            message = "the body is not valid"
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "a whole number"
        case is Double.Type: "a number"
        case is Bool.Type: "true or false"
        case is [Any].Type: "a list"
        default: "a JSON object"
        }
    }
}

/// A JSON value being built by `TreeEncoder`; a reference, so nested containers can fill
/// their place after the parent took it.
final class Node {
    enum Value {
        case null
        case bool(Bool)
        case string(String)
        case number(String)
        case array([Node])
        case object([String: Node])
    }
    var value: Value = .null

    init(_ value: Value = .null) { self.value = value }

    func write(to writer: inout JSONWriter) {
        switch value {
        case .null: writer.raw("null")
        case .bool(let flag): writer.raw(flag ? "true" : "false")
        case .string(let text): writer.string(text)
        case .number(let text): writer.raw(Array(text.utf8))
        case .array(let items):
            writer.raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { writer.raw(",") }
                item.write(to: &writer)
            }
            writer.raw("]")
        case .object(let members):
            writer.raw("{")
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { writer.raw(",") }
                writer.string(key)
                writer.raw(":")
                members[key]!.write(to: &writer)
            }
            writer.raw("}")
        }
    }

    static func from<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> Node {
        if let date = value as? Date { return Node(.string(APIJSON.time(date))) }
        let encoder = TreeEncoder(codingPath: path)
        try value.encode(to: encoder)
        return encoder.root
    }

    static func number(_ value: Double) -> Node { Node(value.isFinite ? .number(String(value)) : .null) }
}

final class TreeEncoder: Encoder {
    let root = Node()
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(codingPath: [any CodingKey] = []) { self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = root.value {} else { root.value = .object([:]) }
        return KeyedEncodingContainer(KeyedContainer<Key>(node: root, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = root.value {} else { root.value = .array([]) }
        return UnkeyedContainer(node: root, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(node: root, codingPath: codingPath) }
}

private struct Key: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

private struct KeyedContainer<K: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    let codingPath: [any CodingKey]

    private func set(_ key: K, _ child: Node) {
        guard case .object(var members) = node.value else { return }
        members[key.stringValue] = child
        node.value = .object(members)
    }

    mutating func encodeNil(forKey key: K) { set(key, Node()) }
    mutating func encode(_ value: Bool, forKey key: K) { set(key, Node(.bool(value))) }
    mutating func encode(_ value: String, forKey key: K) { set(key, Node(.string(value))) }
    mutating func encode(_ value: Double, forKey key: K) { set(key, Node.number(value)) }
    mutating func encode(_ value: Float, forKey key: K) { set(key, Node.number(Double(value))) }
    mutating func encode(_ value: Int, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: Int64, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: UInt64, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: Int8, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: Int16, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: Int32, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: UInt, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: UInt8, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: UInt16, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode(_ value: UInt32, forKey key: K) { set(key, Node(.number(String(value)))) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: K) throws {
        set(key, try Node.from(value, path: codingPath + [key]))
    }

    // Every absent value is written as null: the point of this encoder.
    mutating func encodeIfPresent(_ value: Bool?, forKey key: K) { set(key, value.map { Node(.bool($0)) } ?? Node()) }
    mutating func encodeIfPresent(_ value: String?, forKey key: K) { set(key, value.map { Node(.string($0)) } ?? Node()) }
    mutating func encodeIfPresent(_ value: Double?, forKey key: K) { set(key, value.map(Node.number) ?? Node()) }
    mutating func encodeIfPresent(_ value: Int?, forKey key: K) { set(key, value.map { Node(.number(String($0))) } ?? Node()) }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: K) { set(key, value.map { Node(.number(String($0))) } ?? Node()) }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: K) throws {
        guard let value else { return set(key, Node()) }
        try encode(value, forKey: key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: K) -> KeyedEncodingContainer<NestedKey> {
        let child = Node(.object([:]))
        set(key, child)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: child, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: K) -> any UnkeyedEncodingContainer {
        let child = Node(.array([]))
        set(key, child)
        return UnkeyedContainer(node: child, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(codingPath: codingPath) }
    mutating func superEncoder(forKey key: K) -> any Encoder { TreeEncoder(codingPath: codingPath + [key]) }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]
    var count: Int {
        guard case .array(let items) = node.value else { return 0 }
        return items.count
    }

    private func append(_ child: Node) {
        guard case .array(var items) = node.value else { return }
        items.append(child)
        node.value = .array(items)
    }

    mutating func encodeNil() { append(Node()) }
    mutating func encode(_ value: Bool) { append(Node(.bool(value))) }
    mutating func encode(_ value: String) { append(Node(.string(value))) }
    mutating func encode(_ value: Double) { append(Node.number(value)) }
    mutating func encode(_ value: Float) { append(Node.number(Double(value))) }
    mutating func encode(_ value: Int) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: Int8) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: Int16) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: Int32) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: Int64) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: UInt) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: UInt8) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: UInt16) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: UInt32) { append(Node(.number(String(value)))) }
    mutating func encode(_ value: UInt64) { append(Node(.number(String(value)))) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        append(try Node.from(value, path: codingPath + [Key(intValue: count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = Node(.object([:]))
        append(child)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: child, codingPath: codingPath))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = Node(.array([]))
        append(child)
        return UnkeyedContainer(node: child, codingPath: codingPath)
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(codingPath: codingPath) }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]

    mutating func encodeNil() { node.value = .null }
    mutating func encode(_ value: Bool) { node.value = .bool(value) }
    mutating func encode(_ value: String) { node.value = .string(value) }
    mutating func encode(_ value: Double) { node.value = Node.number(value).value }
    mutating func encode(_ value: Float) { node.value = Node.number(Double(value)).value }
    mutating func encode(_ value: Int) { node.value = .number(String(value)) }
    mutating func encode(_ value: Int8) { node.value = .number(String(value)) }
    mutating func encode(_ value: Int16) { node.value = .number(String(value)) }
    mutating func encode(_ value: Int32) { node.value = .number(String(value)) }
    mutating func encode(_ value: Int64) { node.value = .number(String(value)) }
    mutating func encode(_ value: UInt) { node.value = .number(String(value)) }
    mutating func encode(_ value: UInt8) { node.value = .number(String(value)) }
    mutating func encode(_ value: UInt16) { node.value = .number(String(value)) }
    mutating func encode(_ value: UInt32) { node.value = .number(String(value)) }
    mutating func encode(_ value: UInt64) { node.value = .number(String(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        node.value = try Node.from(value, path: codingPath).value
    }
}
