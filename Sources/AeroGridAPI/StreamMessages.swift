/// A message of the stream as a client reads it (docs/protocol.md): `snapshot` and `delta`
/// carry rows, `error` a code and a message; every other type is read as its `type` alone.
/// The server writes these with `JSONWriter`, straight from the grid (one message for
/// every subscriber of a tick); this is their shape for the programs that read them.
public struct StreamMessage: Decodable, Sendable {
    /// One `[key, cells]` pair: `cells` nil when the row was deleted.
    public struct Row: Decodable, Sendable {
        /// The key as text: a string key as it is, an integer key in decimal.
        public let key: String
        public let cells: [String: Schemas.GridValue?]?

        public init(from decoder: any Decoder) throws {
            var pair = try decoder.unkeyedContainer()
            if let text = try? pair.decode(String.self) {
                key = text
            } else {
                key = String(try pair.decode(Int64.self))
            }
            cells = try pair.decodeIfPresent([String: Schemas.GridValue?].self)
        }
    }

    public let type: String
    public let id: String?
    public let code: String?
    public let message: String?
    public let epoch: Int64?
    public let version: Int64?
    public let columns: [String]?
    public let rows: [Row]?
}
