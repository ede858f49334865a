import AeroGridCore
import Foundation

/// A message a client sends on the stream (docs/protocol.md): `auth`, `subscribe`,
/// `unsubscribe`, `watch_apps` or `ping`. Read leniently, field by field: a field of the
/// wrong type is kept as `.invalid`, so the answer can name the field to fix and still echo
/// the request's id.
struct StreamRequest: Decodable {
    /// A field as the client sent it.
    enum Field<Value> {
        case absent
        case invalid
        case value(Value)

        var value: Value? {
            if case .value(let value) = self { return value }
            return nil
        }

        var isPresent: Bool {
            if case .absent = self { return false }
            return true
        }
    }

    let op: Field<String>
    /// The client's id of the request (a subscription's id), as text: a number is written
    /// as it was sent.
    let id: Field<String>
    let token: Field<String>
    let app: Field<String>
    let grid: Field<String>
    let keys: Field<[GridKey]>
    let columns: Field<[String]>
    let maxRate: Field<Int>

    enum CodingKeys: String, CodingKey {
        case op, id, token, app, grid, keys, columns
        case maxRate = "max_rate"
    }

    /// The message in `bytes`, or nil when they are not a JSON object.
    static func read(_ bytes: [UInt8]) -> StreamRequest? {
        try? JSONDecoder().decode(StreamRequest.self, from: Data(bytes))
    }

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        func field<T: Decodable>(_ key: CodingKeys, as type: T.Type = T.self) -> Field<T> {
            guard fields.contains(key) else { return .absent }
            return (try? fields.decode(T.self, forKey: key)).map { .value($0) } ?? .invalid
        }
        op = field(.op)
        token = field(.token)
        app = field(.app)
        grid = field(.grid)
        columns = field(.columns)
        maxRate = field(.maxRate)
        keys = field(.keys, as: [KeyValue].self).map { $0.map(\.key) }
        id =
            switch field(.id, as: TextOrNumber.self) {
            case .absent: .absent
            case .invalid: .invalid
            case .value(let id): .value(id.text)
            }
    }

    /// A grid key as the protocol writes it: a string or an integer.
    private struct KeyValue: Decodable {
        let key: GridKey

        init(from decoder: any Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let text = try? value.decode(String.self) {
                key = .string(text)
            } else if let integer = try? value.decode(Int64.self) {
                key = .int(integer)
            } else if let exact = Int64(exactly: try value.decode(Double.self)) {
                // 3.0 is the integer 3, as JSON has one kind of number.
                key = .int(exact)
            } else {
                throw DecodingError.dataCorruptedError(in: value, debugDescription: "a key must be a string or an integer")
            }
        }
    }

    /// An id: a string, or a number kept as the text it reads as.
    private struct TextOrNumber: Decodable {
        let text: String

        init(from decoder: any Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let text = try? value.decode(String.self) {
                self.text = text
            } else if let integer = try? value.decode(Int64.self) {
                text = String(integer)
            } else {
                text = String(try value.decode(Double.self))
            }
        }
    }
}

extension StreamRequest.Field {
    func map<T>(_ transform: (Value) -> T) -> StreamRequest.Field<T> {
        switch self {
        case .absent: .absent
        case .invalid: .invalid
        case .value(let value): .value(transform(value))
        }
    }
}
