#if canImport(Glibc)
    import Glibc
#endif

/// Why the sandbox could not be set up, or a profile or limit was refused; the message
/// says what to fix.
public struct SandboxError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        /// A seccomp profile is malformed or names something unknown.
        case profile
        /// A cgroup could not be created, limited, read or removed.
        case cgroup
        /// The sandbox could not be started (a namespace, mount or exec step failed).
        case launch
        /// A requested limit or option is invalid.
        case invalidArgument = "invalid_argument"
        /// A system call failed.
        case system
    }

    public let kind: Kind
    public let message: String
    /// The errno behind it, when a system call failed.
    public let errno: Int32?

    public init(_ kind: Kind, _ message: String, errno: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.errno = errno
    }

    static func system(_ what: String, _ code: Int32) -> SandboxError {
        SandboxError(.system, "\(what): \(errnoDescription(code))", errno: code)
    }

    public var description: String { message }
}
