import Glibc
import Testing

@testable import AeroGridSandbox

@Suite struct HostCommandTests {
    /// A busy supervisor holds descriptors that are not all close-on-exec (sockets of
    /// libraries): a command it runs to resolve an interpreter must hold none of them.
    @Test func aCapturedCommandGetsNoDescriptorAboveStderr() throws {
        // No close-on-exec, on purpose; at 10 or above, clear of what ls opens itself.
        let opened = open("/dev/null", O_RDONLY)
        let inheritable = fcntl(opened, F_DUPFD, 10)
        close(opened)
        try #require(inheritable >= 10)
        defer { close(inheritable) }
        let listing = try HostCommand.capture(["/bin/ls", "/proc/self/fd"])
        let fds = listing.split(whereSeparator: { $0 == "\n" || $0 == " " }).compactMap { Int32($0) }
        // 0–2 as the test has them, and the lowest free one: the directory ls opened to list.
        #expect(!fds.isEmpty && fds.allSatisfy { $0 <= 3 }, "the command saw descriptors \(fds.sorted()); fd \(inheritable) was open without close-on-exec")
    }
}
