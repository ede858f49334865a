import CSandboxSys
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Starts sandboxed processes. Each one gets, in this order (see docs/sandbox.md):
/// its own cgroup with the limits; user, mount, pid, net, ipc, uts and cgroup namespaces
/// with its root mapped to an unprivileged host uid; a tmpfs root holding only read-only
/// binds of what the command needs, `/app`, a size-capped `/tmp`, a minimal `/dev` and a
/// fresh `/proc`; rlimits; no capabilities; no_new_privs; only fds 0–3; only the given
/// environment; the seccomp filter last; then exec. A tiny init is PID 1 inside.
public enum Sandbox {
    /// The host's cgroup support, found once.
    public static let cgroups: CgroupSupport = CgroupSupport.detect()

    /// Numbers the cgroups of sandboxes that were given no path.
    private static let unnamedSandboxes = Atomic<Int>(0)

    /// The directory every sandbox mounts its private tmpfs root on (in its own mount
    /// namespace, so one directory serves them all).
    static let rootDirectory = "/run/aerogrid/sandbox-root"

    /// Mounted read-only in every sandbox, when the host has them: the system's programs
    /// and libraries. On merged-/usr systems /bin, /lib… are symlinks, copied as such.
    static let systemPaths = ["/usr", "/bin", "/sbin", "/lib", "/lib64"]

    /// Removes the empty cgroups named by `paths` (each under the aerogrid root), deepest
    /// first as given; one still in use, or already gone, is left as it is. Without cgroups,
    /// nothing to do.
    public static func removeCgroups(_ paths: [[String]]) {
        guard let hierarchy = cgroups.hierarchy else { return }
        for path in paths {
            if let group = try? hierarchy.group(path) { try? group.remove() }
        }
    }

    public static func launch(_ spec: SandboxSpec) throws(SandboxError) -> SandboxedProcess {
        guard let name = spec.command.first else { throw SandboxError(.invalidArgument, "no command to run") }
        guard spec.hostUID != 0 else { throw SandboxError(.invalidArgument, "the sandbox may not map to host root (uid 0)") }
        // Checked before anything is created, so a refusal leaves nothing behind.
        try spec.limits.validate()
        let hostPath = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        let command = try HostCommand.resolve(name, path: hostPath)
        try SysFS.makeDirectories(rootDirectory)

        // The init builds its file system while the cgroup is made below; it joins the
        // cgroup before it forks the app, so nothing of the app's runs outside it.
        var degradation: String?
        var rlimits: [sbx_rlimit] = [
            sbx_rlimit(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
            sbx_rlimit(resource: Int32(RLIMIT_NOFILE.rawValue), soft: UInt64(spec.openFiles), hard: UInt64(spec.openFiles)),
            sbx_rlimit(resource: Int32(RLIMIT_FSIZE.rawValue), soft: spec.maxFileBytes, hard: spec.maxFileBytes),
        ]
        if cgroups.hierarchy == nil {
            // Without cgroups, rlimits are all there is: address space for memory, and a
            // process count that the kernel counts per host uid, not per sandbox.
            degradation = "running without cgroup limits (\(cgroups.summary)); memory and pids are capped by rlimits only, CPU is not capped"
            if let memory = spec.limits.memoryBytes {
                rlimits.append(sbx_rlimit(resource: Int32(RLIMIT_AS.rawValue), soft: memory, hard: memory))
            }
            if let pids = spec.limits.pids {
                rlimits.append(sbx_rlimit(resource: SBX_RLIMIT_NPROC, soft: UInt64(pids), hard: UInt64(pids)))
            }
        }
        var cleanup = LaunchCleanup()
        defer { cleanup.run() }

        var ipcFD: Int32 = -1
        var ipcSocket: Int32?
        if spec.withIPCSocket {
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                throw SandboxError.system("cannot make the IPC socket pair", errno)
            }
            ipcSocket = pair[0]
            ipcFD = pair[1]
            cleanup.fds.append(pair[1])
            cleanup.failureOnlyFDs.append(pair[0])
        } else if let inherited = spec.inheritedIPCFD {
            ipcFD = inherited
        }

        var stdoutRead: Int32?
        var stderrRead: Int32?
        var stdoutFD: Int32 = -1
        var stderrFD: Int32 = -1
        switch spec.output {
        case .pipes:
            for index in 0..<2 {
                var pipeFDs: [Int32] = [-1, -1]
                guard sbx_pipe2(&pipeFDs, O_CLOEXEC) == 0 else { throw SandboxError.system("cannot make an output pipe", errno) }
                cleanup.fds.append(pipeFDs[1])
                cleanup.failureOnlyFDs.append(pipeFDs[0])
                if index == 0 {
                    stdoutRead = pipeFDs[0]
                    stdoutFD = pipeFDs[1]
                } else {
                    stderrRead = pipeFDs[0]
                    stderrFD = pipeFDs[1]
                }
            }
        case .inherit:
            stdoutFD = 1
            stderrFD = 2
        case .discard:
            break
        }

        let strings = CStrings()
        let mounts = mountTable(spec: spec, command: command, strings: strings)
        let argv = strings.array([command.executable] + spec.command.dropFirst())
        let envp = strings.array(spec.environment.map { "\($0.0)=\($0.1)" })

        var child = sbx_child(pid: -1, pidfd: -1, errfd: -1, statusfd: -1, cgroupfd: -1)
        var failure = sbx_failure()
        let spawned: Int32 = mounts.withUnsafeBufferPointer { mountBuffer in
            rlimits.withUnsafeBufferPointer { rlimitBuffer in
                withOptionalBytes(spec.filter?.program) { bpf, bpfCount in
                    var config = sbx_config()
                    config.exec_path = UnsafePointer(argv[0])
                    config.argv = UnsafePointer(argv)
                    config.envp = UnsafePointer(envp)
                    config.new_root = UnsafePointer(strings.string(rootDirectory))
                    config.mounts = mountBuffer.baseAddress
                    config.n_mounts = Int32(mountBuffer.count)
                    config.workdir = UnsafePointer(strings.string("/app"))
                    config.hostname = UnsafePointer(strings.string("aerogrid"))
                    config.ipc_fd = ipcFD
                    config.stdin_fd = -1
                    config.stdout_fd = stdoutFD
                    config.stderr_fd = stderrFD
                    config.uid = 0
                    config.gid = 0
                    config.host_uid = spec.hostUID
                    config.host_gid = spec.hostUID
                    config.rlimits = rlimitBuffer.baseAddress
                    config.n_rlimits = Int32(rlimitBuffer.count)
                    config.bpf = bpf
                    config.bpf_len = bpfCount
                    let spawn = {
                        let result = sbx_spawn(&config, &child, &failure)
                        // errno is the spawning thread's: read it there.
                        if result != 0 && failure.err == 0 { failure.err = errno }
                        return result
                    }
                    return spec.spawnOnCallingThread ? spawn() : SpawnerThread.shared.run(spawn)
                }
            }
        }
        guard spawned == 0 else {
            throw SandboxError(.launch, formatFailure(failure, code: failure.err))
        }
        // From here the child holds its own copies of these descriptors.
        cleanup.closeChildSide()
        cleanup.child = child
        /// A step the init failed, with the mount named, not only its index.
        func setupError(_ setupFailure: sbx_failure) -> SandboxError {
            var message = formatFailure(setupFailure, code: setupFailure.err)
            let step = Int32(setupFailure.step)
            if step == Int32(SBX_STEP_MOUNT.rawValue) || step == Int32(SBX_STEP_OPEN_SOURCE.rawValue),
                mounts.indices.contains(Int(setupFailure.index)), let target = mounts[Int(setupFailure.index)].target
            {
                message += " (mount target \(String(cString: target)))"
            }
            return SandboxError(.launch, message)
        }
        let cgroup: (any Cgroup)?
        switch try makeCgroup(spec, for: &cleanup) {
        case .placed(let group): cgroup = group
        case .initFailed(let setupFailure): throw setupError(setupFailure)
        }
        child = cleanup.child!
        var setupFailure = sbx_failure()
        let setup = sbx_await_exec(&child, &setupFailure)
        cleanup.child = child
        if setup < 0 {
            // The error pipe could not be read: the sandbox's state is unknown, so it goes.
            throw SandboxError(.launch, "lost contact with the sandbox while it started: \(errnoDescription(errno))")
        }
        if setup == 1 { throw setupError(setupFailure) }
        let process = try SandboxedProcess(
            child: child, cgroup: cgroup, ipcSocket: ipcSocket, stdout: stdoutRead, stderr: stderrRead,
            degradation: degradation)
        cleanup.succeeded()
        return process
    }

    private enum Placement {
        case placed((any Cgroup)?)
        /// The init failed a setup step (a mount, say) before it could be placed.
        case initFailed(sbx_failure)
    }

    /// Makes the sandbox's cgroup with its limits and puts the waiting init in it (see
    /// `sbx_place_in_cgroup`); without cgroups, only lets the init go on.
    private static func makeCgroup(_ spec: SandboxSpec, for cleanup: inout LaunchCleanup) throws(SandboxError) -> Placement {
        var group: (any Cgroup)?
        var fds: [Int32] = []
        if let hierarchy = cgroups.hierarchy {
            let path = spec.cgroupPath.isEmpty ? ["sandbox-\(getpid())-\(unnamedSandboxes.add(1, ordering: .relaxed).newValue)"] : spec.cgroupPath
            let made = try hierarchy.group(path)
            group = made
            cleanup.cgroup = made
            try made.setLimits(spec.limits)
            for path in made.selfJoinFiles ?? made.procsFiles {
                let fd = open(path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw SandboxError.system("cannot open \(path)", errno) }
                cleanup.fds.append(fd)
                fds.append(fd)
            }
        }
        var failure = sbx_failure()
        let joinSelf: Int32 = group?.selfJoinFiles != nil ? 1 : 0
        let placed = sbx_place_in_cgroup(&cleanup.child!, fds, Int32(fds.count), joinSelf, &failure)
        let code = errno
        cleanup.closeChildSide()
        if placed == 1 { return .initFailed(failure) }
        guard placed == 0 else { throw SandboxError(.launch, formatFailure(failure, code: code)) }
        return .placed(group)
    }

    /// The sandbox's file system, in mount order: system directories, the command's own
    /// paths, /dev, /proc, /tmp, extra read-only paths, then the bundle at /app.
    static func mountTable(spec: SandboxSpec, command: HostCommand, strings: CStrings) -> [sbx_mount] {
        var mounts: [sbx_mount] = []
        func bind(_ path: String, at target: String, optional: Bool = false) {
            let flags = SBX_MOUNT_READONLY | (optional ? SBX_MOUNT_OPTIONAL : 0)
            mounts.append(
                sbx_mount(
                    kind: Int32(SBX_MOUNT_BIND.rawValue), flags: flags, source: UnsafePointer(strings.string(path)),
                    target: UnsafePointer(strings.string(target)), data: nil))
        }
        for path in systemPaths {
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if (info.st_mode & S_IFMT) == S_IFLNK, let link = readLink(path) {
                mounts.append(
                    sbx_mount(
                        kind: Int32(SBX_MOUNT_SYMLINK.rawValue), flags: 0, source: UnsafePointer(strings.string(link)),
                        target: UnsafePointer(strings.string(path)), data: nil))
            } else {
                bind(path, at: path)
            }
        }
        bind("/etc/ld.so.cache", at: "/etc/ld.so.cache", optional: true)
        var devCount: Int32 = 0
        if let dev = sbx_standard_dev_mounts(&devCount) {
            mounts.append(contentsOf: UnsafeBufferPointer(start: dev, count: Int(devCount)))
        }
        mounts.append(sbx_mount(kind: Int32(SBX_MOUNT_PROC.rawValue), flags: 0, source: nil, target: UnsafePointer(strings.string("/proc")), data: nil))
        mounts.append(
            sbx_mount(
                kind: Int32(SBX_MOUNT_TMPFS.rawValue), flags: 0, source: nil, target: UnsafePointer(strings.string("/tmp")),
                data: UnsafePointer(strings.string("size=\(spec.tmpBytes),mode=1777"))))
        // Later mounts may sit inside earlier ones (a prefix under /usr is already there).
        let covered = systemPaths.map { $0 + "/" }
        for path in command.requiredPaths + spec.readOnlyPaths where !covered.contains(where: { path.hasPrefix($0) }) {
            bind(path, at: path)
        }
        if let bundle = spec.bundle {
            bind(bundle, at: "/app")
        } else {
            mounts.append(sbx_mount(kind: Int32(SBX_MOUNT_DIR.rawValue), flags: 0, source: nil, target: UnsafePointer(strings.string("/app")), data: nil))
        }
        return mounts
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func formatFailure(_ failure: sbx_failure, code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 1024)
        var copy = failure
        if copy.err == 0 { copy.err = code }
        sbx_format_failure(&copy, nil, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Runs `body` with a pointer and count for optional bytes.
private func withOptionalBytes<T>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> T) -> T {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { body($0.baseAddress, $0.count) }
}

/// What a launch must undo: the child's ends of descriptors always, and on failure our
/// ends, the sandbox (killed and reaped) and its cgroup too.
private struct LaunchCleanup {
    var cgroup: (any Cgroup)?
    var child: sbx_child?
    var fds: [Int32] = []
    var failureOnlyFDs: [Int32] = []
    private var done = false

    mutating func closeChildSide() {
        fds.forEach { close($0) }
        fds.removeAll()
    }

    mutating func succeeded() {
        done = true
    }

    mutating func run() {
        closeChildSide()
        guard !done else { return }
        failureOnlyFDs.forEach { close($0) }
        if var child {
            _ = sbx_pidfd_send_signal(child.pidfd, SIGKILL)
            var exit = sbx_exit()
            _ = sbx_wait(&child, 0, &exit)
            sbx_child_close(&child)
        }
        if let cgroup {
            try? cgroup.killAll()
            try? cgroup.remove()
        }
    }
}
