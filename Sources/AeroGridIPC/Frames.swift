public import AeroGridCore
import Foundation

/// The frame types of the app IPC protocol (docs/ipc.md). Every frame on the socket is
/// `u32 length (BE, counts type + payload) | u8 type | payload`.
public enum FrameType: UInt8, Sendable {
    // App → supervisor.
    case hello = 0x01
    case gridUpdate = 0x02
    case batchDone = 0x03
    case produce = 0x04
    case log = 0x05
    case error = 0x06
    // Supervisor → app.
    case restore = 0x11
    case restoreDone = 0x12
    case records = 0x13
    case shutdown = 0x14
    // Both ways.
    case heartbeat = 0x20
}

public enum IPCLimits {
    /// The largest `length` field allowed; larger is a protocol violation.
    public static let maxFrameLength = 16 * 1024 * 1024
    public static let protocolMajor = 1
    public static let protocolVersion = "1.0"
}

/// The peer broke the protocol: the connection is closed and the app killed with the
/// crash reason `protocol`. The message says what was wrong, for the app's log.
public struct ProtocolViolation: Error, Sendable, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "protocol violation: \(message)" }
}
