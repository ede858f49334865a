/// Everything needed to start one sandboxed process.
public struct SandboxSpec: Sendable {
    /// The command and its arguments. The command is resolved on the host (through PATH
    /// and shims such as pyenv's) and what it needs is mounted read-only.
    public var command: [String]
    /// The system-call filter, compiled once per profile by the caller; nil runs without
    /// one (only for measuring what the filter costs).
    public var filter: SeccompFilter?
    public var limits: CgroupLimits
    /// RLIMIT_NOFILE.
    public var openFiles: Int
    /// RLIMIT_FSIZE: the largest file the app may write.
    public var maxFileBytes: UInt64
    /// Size of the writable `/tmp`.
    public var tmpBytes: UInt64
    /// Host paths mounted read-only at the same path (the SDK, a runtime).
    public var readOnlyPaths: [String]
    /// Host directory mounted read-only at `/app`, the working directory.
    public var bundle: String?
    /// The whole environment of the app: nothing of the caller's is passed on.
    public var environment: [(String, String)]
    /// Where the cgroup goes under our own root, e.g. `["demo", "ordersapp"]`. Empty: a
    /// name of its own (`sandbox-PID-N`), never shared — a sandbox's end kills everything
    /// in its cgroup.
    public var cgroupPath: [String]
    /// The unprivileged host uid (and gid) the sandbox's root maps to. Never 0.
    public var hostUID: UInt32
    /// Give the app a Unix socket at fd 3; the other end is `SandboxedProcess.ipcSocket`.
    public var withIPCSocket: Bool
    /// Pass an existing descriptor as fd 3 instead (the launcher's `--ipc-fd`).
    public var inheritedIPCFD: Int32?
    public var output: Output
    /// Clone from the calling thread rather than the shared spawner thread. Only for a
    /// caller whose calling thread outlives the sandbox (the launcher's main thread): the
    /// init is killed when the thread that cloned it exits. Saves starting that thread.
    public var spawnOnCallingThread = false

    public enum Output: Sendable, Equatable {
        /// stdout and stderr become pipes the caller reads (`SandboxedProcess.stdout`…).
        case pipes
        /// The app writes to the caller's own stdout and stderr.
        case inherit
        case discard
    }

    public init(
        command: [String], filter: SeccompFilter? = nil, limits: CgroupLimits = CgroupLimits(),
        openFiles: Int = 256, maxFileBytes: UInt64 = 64 << 20, tmpBytes: UInt64 = 64 << 20,
        readOnlyPaths: [String] = [], bundle: String? = nil, environment: [(String, String)] = [],
        cgroupPath: [String] = [], hostUID: UInt32 = 65534, withIPCSocket: Bool = false,
        inheritedIPCFD: Int32? = nil, output: Output = .pipes
    ) {
        self.command = command
        self.filter = filter
        self.limits = limits
        self.openFiles = openFiles
        self.maxFileBytes = maxFileBytes
        self.tmpBytes = tmpBytes
        self.readOnlyPaths = readOnlyPaths
        self.bundle = bundle
        self.environment = environment
        self.cgroupPath = cgroupPath
        self.hostUID = hostUID
        self.withIPCSocket = withIPCSocket
        self.inheritedIPCFD = inheritedIPCFD
        self.output = output
    }
}

/// How a sandboxed app ended.
public enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Killed by the kernel's OOM killer, as the cgroup's `oom_kill` counter shows (not
    /// guessed from a SIGKILL).
    case oom
    /// Killed by the seccomp filter (SIGSYS): a forbidden system call or ABI.
    case seccomp
    /// Outlived its deadline and was killed.
    case timeout
    /// The sandbox could not be set up; the message names the step.
    case setupFailed(String)

    public var description: String {
        switch self {
        case .exited(let code): "exit \(code)"
        case .signaled(let signal): "signal \(signal)"
        case .oom: "oom"
        case .seccomp: "seccomp"
        case .timeout: "timeout"
        case .setupFailed(let message): "setup failed: \(message)"
        }
    }

    /// A shell-style status: the exit code, or 128 + signal (137 for oom, 159 for seccomp),
    /// 124 for a timeout and 125 when setup failed.
    public var shellStatus: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        case .oom: 137
        case .seccomp: 159
        case .timeout: 124
        case .setupFailed: 125
        }
    }
}
