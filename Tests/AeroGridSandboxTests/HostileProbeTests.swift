import AeroGridSandbox
import Foundation
import Testing

/// All sandbox tests run one after another: they count processes and cgroups on the host.
@Suite(.serialized, .timeLimit(.minutes(5)))
enum SandboxSuite {}

/// What a tenant's bundle will try (the numbered behaviours of the sandbox design). Each
/// probe runs twice in the same test, on the host and in a sandbox with the python.json
/// profile: the host gets the kernel's own answer, the sandbox the filter's or the
/// isolation's, and a test where both agree fails. Meanwhile a second sandbox must keep
/// answering, and no probe process may be left on the host.
extension SandboxSuite {
    struct HostileProbe: Sendable, CustomTestStringConvertible {
        let behaviour: Int
        let name: String
        var args: [String] = []
        /// Arguments for the host run when they differ (another process to look at).
        var hostArgs: [String]?
        /// RLIMIT_FSIZE for this probe's sandbox.
        var maxFileBytes: UInt64 = 64 << 20
        let expected: String

        var testDescription: String { "\(behaviour). \(name) \(args.joined(separator: " "))" }
    }

    /// One name per run of the suite. (A sandbox's init starts as a copy of this process and
    /// holds every descriptor for a moment, so a closed listener can outlive its test.)
    static let abstractSocketName = "aerogrid-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    static let probes: [HostileProbe] = [
        HostileProbe(behaviour: 1, name: "socket-inet", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 1, name: "socket-inet6", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 2, name: "socket-netlink", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 2, name: "socket-packet", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 2, name: "socket-vsock", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 2, name: "socket-alg", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 3, name: "abstract-unix-connect", args: [abstractSocketName], expected: "result=errno errno=ECONNREFUSED"),
        HostileProbe(behaviour: 4, name: "fork-bomb", args: ["200"], expected: "result=errno errno=EAGAIN forked=(2[0-9]|3[01])"),
        HostileProbe(behaviour: 5, name: "thread-bomb", args: ["200"], expected: "result=errno errno=EAGAIN threads=(2[0-9]|3[01])"),
        HostileProbe(behaviour: 8, name: "fill-tmp", args: ["64"], expected: "result=errno errno=ENOSPC written_kb=8192"),
        HostileProbe(behaviour: 9, name: "fsize", args: ["8388608"], maxFileBytes: 1 << 20, expected: "result=errno errno=EFBIG written=1048576"),
        HostileProbe(behaviour: 10, name: "nofile", args: ["4096"], expected: "result=errno errno=EMFILE opened=6[01]"),
        HostileProbe(behaviour: 11, name: "ptrace", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 11, name: "process-vm-writev", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 11, name: "pidfd-getfd", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 11, name: "ids", expected: "result=ok uid=0 gid=0 pid=2 ppid=1 groups=none"),
        HostileProbe(behaviour: 12, name: "kill-all", expected: "result=ok sent=1 visible=[34] signalable_others=1 own_children_killed=2"),
        HostileProbe(behaviour: 13, name: "unshare-newuser", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 13, name: "clone-newns", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 13, name: "clone3", expected: "result=errno errno=ENOSYS"),
        HostileProbe(behaviour: 14, name: "mount", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 14, name: "umount2", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 14, name: "pivot-root", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 14, name: "setns", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 14, name: "fsopen", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 14, name: "move-mount", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 15, name: "bpf", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 15, name: "perf-event-open", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 15, name: "userfaultfd", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 15, name: "io-uring-setup", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 15, name: "keyctl", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 16, name: "ioctl-tiocsti", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 16, name: "ioctl-tiocsti-highbits", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 17, name: "personality-rie", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 18, name: "list-fds", expected: "result=ok fds=0,1,2,3 count=4"),
        HostileProbe(behaviour: 19, name: "write-proc-self-exe", expected: "result=errno errno=EROFS"),
        HostileProbe(behaviour: 19, name: "write-path", args: ["/app"], expected: "result=errno errno=EROFS"),
        HostileProbe(behaviour: 19, name: "write-path", args: ["/usr"], expected: "result=errno errno=EROFS"),
        HostileProbe(behaviour: 19, name: "write-path", args: [hostPython.prefix], expected: "result=errno errno=EROFS"),
        HostileProbe(behaviour: 20, name: "read-etc-shadow", expected: "result=errno errno=ENOENT"),
        HostileProbe(behaviour: 20, name: "read-proc1-environ", hostArgs: ["OTHER"], expected: "result=errno errno=EACCES"),
        HostileProbe(behaviour: 20, name: "read-proc1-mem", hostArgs: ["OTHER"], expected: "result=errno errno=EACCES"),
        HostileProbe(behaviour: 20, name: "write-sys-fs-cgroup", expected: "result=errno errno=ENOENT"),
        HostileProbe(behaviour: 22, name: "capset", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 22, name: "chown", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 22, name: "mknod", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 22, name: "raw-socket", expected: "result=errno errno=EPERM"),
        HostileProbe(behaviour: 26, name: "print-env", expected: "result=ok count=1 names=PATH$"),
    ]

    @Suite struct HostileProbes {
        @Test(arguments: SandboxSuite.probes)
        func theSandboxRefusesWhatTheHostAllows(_ probe: SandboxSuite.HostileProbe) async throws {
            // What the host offers: a secret in the environment, a listener on the host's
            // abstract socket namespace, another process to spy on.
            setenv("AEROGRID_OPERATOR_TOKEN", "host-secret", 1)
            // Only the connect probe needs the listener: others need no name of their own.
            let listener = probe.name == "abstract-unix-connect" ? try AbstractListener(name: SandboxSuite.abstractSocketName) : nil
            let other = try Process.run(URL(fileURLWithPath: "/bin/sleep"), arguments: ["30"])
            defer {
                other.terminate()
                listener?.close()
            }
            let echo = try EchoSandbox()
            #expect(echo.answers(), "the second sandbox answers before the probe")

            let hostArgs = (probe.hostArgs ?? probe.args).map { $0 == "OTHER" ? "\(other.processIdentifier)" : $0 }
            let onHost = try shell([probePath, probe.name] + hostArgs)
            var spec = probeSpec([probePath, probe.name] + probe.args)
            spec.maxFileBytes = probe.maxFileBytes
            let (inSandbox, termination) = try await runSandboxed(spec)

            #expect(inSandbox.firstMatch(of: try Regex(probe.expected)) != nil, "sandboxed: \(inSandbox)")
            #expect(inSandbox != onHost, "host and sandbox agree: \(onHost)")
            #expect(termination == .exited(0) || termination == .exited(1), "\(termination)")
            #expect(echo.answers(), "the second sandbox still answers")
            #expect(probeProcessesOnHost() == 0, "no probe process is left on the host")
            await echo.stop()
        }
    }
}

/// A Unix socket listening in the host's abstract namespace.
final class AbstractListener: Sendable {
    let fd: Int32

    init(name: String) throws {
        // Close-on-exec: processes other tests start meanwhile must not keep it open.
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let nameBytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0
            for (index, byte) in nameBytes.enumerated() { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + nameBytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw TestError("cannot listen on @\(name): errno \(errno)") }
    }

    func close() {
        _ = Glibc.close(fd)
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
