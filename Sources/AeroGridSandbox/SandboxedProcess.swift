import CSandboxSys
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A running sandbox: its init (PID 1 inside), the app under it, its cgroup and the
/// descriptors the caller talks to it through.
public final class SandboxedProcess: Sendable {
    /// The sandbox init's pid, as the host sees it.
    public let pid: Int32
    /// Our end of the app's fd 3, when the spec asked for one. The caller owns it.
    public let ipcSocket: Int32?
    /// Read ends of the app's stdout and stderr, with `.pipes`. The caller owns them.
    public let stdout: Int32?
    public let stderr: Int32?
    /// Set when the host has no usable cgroups and only rlimits apply: say so loudly.
    public let degradation: String?
    public let cgroup: (any Cgroup)?

    /// A pidfd of the init: readable once the sandbox has ended, for monitors that poll.
    /// This object's own copy, open until it is released: signals sent through it after the
    /// sandbox has ended fail harmlessly instead of reaching whatever reused the number.
    public let pidfd: Int32
    /// Readable once the app has ended (the init writes how, then exits) or the init is gone:
    /// for a monitor that wants the outcome before the sandbox is torn down (`appOutcome`).
    public let appEndedFD: Int32
    /// Set once the init is reaped: from then on `kill` leaves the cgroup path alone (the
    /// app's next process may already use it).
    private let reaped = Atomic<Bool>(false)

    private let child: Mutex<sbx_child>
    private let ended = Mutex<Termination?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// With `detachCleanup`: our end of the pipe the helper waits on before it removes the
    /// cgroup. Open while this object lives (or the process does).
    private let cleanupHold = Mutex<Int32>(-1)

    init(child: sbx_child, cgroup: (any Cgroup)?, ipcSocket: Int32?, stdout: Int32?, stderr: Int32?, degradation: String?) throws(SandboxError) {
        let pidfd = fcntl(child.pidfd, F_DUPFD_CLOEXEC, 3)
        let appEndedFD = pidfd < 0 ? -1 : fcntl(child.statusfd, F_DUPFD_CLOEXEC, 3)
        guard appEndedFD >= 0 else {
            let code = errno
            if pidfd >= 0 { close(pidfd) }
            throw SandboxError.system("cannot keep the sandbox's descriptors", code)
        }
        self.pid = child.pid
        self.pidfd = pidfd
        self.appEndedFD = appEndedFD
        self.child = Mutex(child)
        self.cgroup = cgroup
        self.ipcSocket = ipcSocket
        self.stdout = stdout
        self.stderr = stderr
        self.degradation = degradation
    }

    /// Changes the limits of the running sandbox at once (no restart): operators tune
    /// quotas live.
    public func updateLimits(_ limits: CgroupLimits) throws(SandboxError) {
        guard let cgroup else {
            throw SandboxError(.cgroup, degradation ?? "this sandbox has no cgroup")
        }
        try cgroup.setLimits(limits)
    }

    /// CPU, memory and pids used now, from the cgroup (nil without one).
    public func usage() -> CgroupUsage? {
        try? cgroup?.usage()
    }

    /// Sends a signal to the sandbox's init, which passes SIGTERM, SIGINT and SIGHUP on to
    /// the app; SIGKILL ends the whole sandbox (every process of its pid namespace).
    public func signal(_ signal: Int32) {
        _ = sbx_pidfd_send_signal(pidfd, signal)
    }

    /// Waits for the app to end and says how. The sandbox is cleaned up before this
    /// returns: every process in its cgroup killed, the cgroup removed.
    public func wait() async -> Termination {
        if reaped.load(ordering: .acquiring), let known = ended.withLock({ $0 }) { return known }
        return await onDedicatedThread { [self] in waitUntilExit() }
    }

    /// Like `wait`, but kills the sandbox and answers `.timeout` after `deadline`.
    public func wait(timeout: Duration) async -> Termination {
        let timer = Task { [self] in
            try await Task.sleep(for: timeout)
            timeOut()
        }
        let termination = await wait()
        timer.cancel()
        return termination
    }

    /// SIGTERM to the app, then after `grace` the whole cgroup and the init are killed, so
    /// a process that ignores SIGTERM or double-forked to hide is gone too.
    public func stop(grace: Duration) async -> Termination {
        signal(SIGTERM)
        let killer = Task { [self] in
            try await Task.sleep(for: grace)
            kill()
        }
        let termination = await wait()
        killer.cancel()
        return termination
    }

    /// Kills everything in the sandbox now (nothing once it has ended).
    public func kill() {
        guard !reaped.load(ordering: .acquiring) else { return }
        try? cgroup?.killAll()
        signal(SIGKILL)
    }

    deinit {
        close(pidfd)
        close(appEndedFD)
        cleanupHold.withLock { if $0 >= 0 { close($0) } }
    }

    /// How the app ended, from its init's report once `appEndedFD` is readable (blocks until
    /// then), while the sandbox may still be on its way down; nil when the init died without
    /// one (killed from outside): `waitUntilExit` says how. Call `waitUntilExit` or
    /// `detachCleanup` after it: this reaps and removes nothing.
    public func appOutcome() -> Termination? {
        // Under the reaping lock: a reaping at the same time must not find the report
        // taken and nothing recorded yet.
        waiting.withLock { _ in
            if let known = ended.withLock({ $0 }) { return known }
            var exit = sbx_exit()
            guard sbx_read_app_status(appEndedFD, &exit) == 0 else { return nil }
            return record(classify(exit))
        }
    }

    /// For a launcher that exits as soon as it has the outcome (`appOutcome`): a helper
    /// process waits until the init, and with it every process of the sandbox, is gone, and
    /// until this object is released (or the process exits: it may still read the cgroup
    /// until then), and then removes the cgroup. So the caller's exit waits for neither, and
    /// the group goes even if the caller dies first (see `sbx_detach_cleanup`). Once per
    /// process; false if no helper could be started: then reap with `waitUntilExit`.
    public func detachCleanup() -> Bool {
        if reaped.load(ordering: .acquiring) { return true }
        let directories = cgroup?.directories ?? []
        if directories.isEmpty { return true }  // the init, orphaned, is reaped by the host's
        var hold: [Int32] = [-1, -1]
        guard sbx_pipe2(&hold, O_CLOEXEC) == 0 else { return false }
        let strings = CStrings()
        let pointers: [UnsafePointer<CChar>?] = directories.map { UnsafePointer(strings.string($0)) }
        let started = withExtendedLifetime(strings) {
            pointers.withUnsafeBufferPointer { sbx_detach_cleanup(pidfd, hold[0], $0.baseAddress, Int32($0.count)) } == 0
        }
        close(hold[0])  // the helper has its own copy
        guard started else {
            close(hold[1])
            return false
        }
        cleanupHold.withLock { $0 = hold[1] }
        return true
    }

    /// Kills the sandbox because it outlived its deadline: it ends as `.timeout`.
    public func timeOut() {
        stopping.store(true, ordering: .relaxed)
        kill()
    }

    /// `wait` for callers that may block their thread (the launcher's own loop). Callers
    /// at the same time wait for one reaping, not one each.
    public func waitUntilExit() -> Termination {
        waiting.withLock { _ in reapOnce() }
    }

    /// Held for the whole reaping, so it happens once.
    private let waiting = Mutex<Void>(())

    private func reapOnce() -> Termination {
        if reaped.load(ordering: .acquiring), let known = ended.withLock({ $0 }) { return known }
        var exit = sbx_exit()
        var result: Int32 = -1
        var copy = child.withLock { $0 }
        repeat { result = sbx_wait(&copy, 0, &exit) } while result < 0 && errno == EINTR
        reaped.store(true, ordering: .releasing)
        child.withLock { $0 = copy }
        // `appOutcome` may have taken the init's report already.
        let termination = ended.withLock({ $0 }) ?? classify(result == 0 ? exit : nil)
        // Whatever is left (a double-forked straggler outside the pid namespace cannot
        // exist, but a cgroup may still hold exiting processes) goes, then the group.
        if let cgroup {
            try? cgroup.killAll()
            // Processes just killed may still be leaving it (EBUSY): a leaf left behind would
            // keep its tenant's directory when the tenant is deleted.
            for _ in 0..<50 {
                do {
                    try cgroup.remove()
                    break
                } catch { usleep(20_000) }
            }
        }
        child.withLock { sbx_child_close(&$0) }
        return record(termination)
    }

    /// The first outcome recorded is the one every caller gets.
    private func record(_ termination: Termination) -> Termination {
        ended.withLock { stored in
            if let stored { return stored }
            stored = termination
            return termination
        }
    }

    private func classify(_ exit: sbx_exit?) -> Termination {
        if stopping.load(ordering: .relaxed) { return .timeout }
        guard let exit else { return .signaled(SIGKILL) }
        // Read only for a death by SIGKILL, the OOM killer's signal: an exit costs no read.
        var oomKilled: Bool { (try? cgroup?.oomKills() ?? 0).map { $0 > 0 } ?? false }
        switch Int32(exit.kind) {
        case Int32(SBX_EXIT_CODE.rawValue):
            return .exited(Int32(exit.value))
        case Int32(SBX_EXIT_SIGNAL.rawValue):
            if exit.value == SIGSYS { return .seccomp }
            if exit.value == SIGKILL && oomKilled { return .oom }
            return .signaled(Int32(exit.value))
        default:
            // The init itself died (killed from outside): the app died with it.
            if oomKilled { return .oom }
            return exit.init_kind == Int32(SBX_EXIT_SIGNAL.rawValue) ? .signaled(Int32(exit.init_value)) : .exited(Int32(exit.init_value))
        }
    }
}
