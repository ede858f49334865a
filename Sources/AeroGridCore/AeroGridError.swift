/// The platform's own errors (validation, configuration), with a code a program can switch
/// on and a message a person can act on. Errors of an outside system keep their own type
/// (`KafkaError`, for example) so their native codes are not lost.
public struct AeroGridError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let invalidName = Code("invalid_name")
        public static let invalidArgument = Code("invalid_argument")
        public static let invalidConfiguration = Code("invalid_configuration")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
