/// Why an app process ended when nobody asked it to.
public enum CrashReason: Sendable, Equatable, CustomStringConvertible {
    case exit(Int32)
    case signal(Int32)
    /// Killed by the kernel's OOM killer (the cgroup's counter says so).
    case oom
    /// Killed by the seccomp filter: a forbidden system call.
    case seccomp
    /// Broke the IPC protocol or one of its caps; the detail says how.
    case protocolViolation(String)
    /// Sent nothing for longer than the heartbeat timeout.
    case heartbeatTimeout
    /// Never got going: no hello, a topic that does not exist, a sandbox that could not start.
    case startup(String)
    /// Went over one of its quotas (grid rows or bytes); the detail has the numbers.
    case quota(String)
    /// Asked for a topic outside its tenant's topic ACL; the detail names the topic and the rules.
    case topicRefused(String)

    public var description: String {
        switch self {
        case .exit(let code): "exited with status \(code)"
        case .signal(let signal): "killed by signal \(signal)"
        case .oom: "out of memory (killed by the OOM killer)"
        case .seccomp: "made a forbidden system call (killed by seccomp)"
        case .protocolViolation(let detail): "protocol violation: \(detail)"
        case .heartbeatTimeout: "stopped answering (heartbeat timeout)"
        case .startup(let detail): "could not start: \(detail)"
        case .quota(let detail): "over its quota: \(detail)"
        case .topicRefused(let detail): "refused: \(detail)"
        }
    }

    /// A short machine-readable name: `exit`, `signal`, `oom`, `seccomp`, `protocol`,
    /// `heartbeat`, `startup`, `quota`, `acl`.
    public var code: String {
        switch self {
        case .exit: "exit"
        case .signal: "signal"
        case .oom: "oom"
        case .seccomp: "seccomp"
        case .protocolViolation: "protocol"
        case .heartbeatTimeout: "heartbeat"
        case .startup: "startup"
        case .quota: "quota"
        case .topicRefused: "acl"
        }
    }
}

/// Restart delays: 1 s, 2 s, 4 s … up to `cap`, back to the start once a process has run
/// healthy for `healthyAfter`.
public struct BackoffPolicy: Sendable, Equatable {
    public var initial: Duration
    public var cap: Duration
    public var healthyAfter: Duration

    public init(initial: Duration = .seconds(1), cap: Duration = .seconds(60), healthyAfter: Duration = .seconds(60)) {
        self.initial = initial
        self.cap = cap
        self.healthyAfter = healthyAfter
    }

    func delay(afterFailures failures: Int) -> Duration {
        var delay = initial
        for _ in 1..<max(1, failures) {
            delay = delay * 2
            if delay >= cap { return cap }
        }
        return min(delay, cap)
    }
}

/// An app's lifecycle as a state machine: `created → starting → running → stopping →
/// stopped`, and on an unrequested end `crashed(reason) → backoff → starting`. Pure logic:
/// the runner feeds it events and does what it answers.
public struct AppLifecycle: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case created, starting, running, stopping, stopped
        case crashed(CrashReason)
        /// Waiting this long before starting again, after a crash.
        case backoff(Duration, after: CrashReason)

        public var name: String {
            switch self {
            case .created: "created"
            case .starting: "starting"
            case .running: "running"
            case .stopping: "stopping"
            case .stopped: "stopped"
            case .crashed: "crashed"
            case .backoff: "backoff"
            }
        }
    }

    public private(set) var state: State = .created
    public private(set) var restarts = 0
    /// The last crash, kept after the app runs again (for status pages).
    public private(set) var lastCrash: CrashReason?
    public let policy: BackoffPolicy
    private var consecutiveFailures = 0
    private var stopRequested = false

    public init(policy: BackoffPolicy = BackoffPolicy()) {
        self.policy = policy
    }

    public mutating func startProcess() {
        guard !stopRequested else { return }
        if case .backoff = state { restarts += 1 }
        state = .starting
    }

    public mutating func processRunning() {
        guard !stopRequested else { return }
        state = .running
    }

    public mutating func stop() {
        stopRequested = true
        if state != .stopped { state = .stopping }
    }

    /// The process ended after running `uptime`. Returns how long to wait before starting
    /// another, or nil when the app is stopping (then it is stopped).
    public mutating func processEnded(_ reason: CrashReason?, uptime: Duration) -> Duration? {
        if stopRequested {
            state = .stopped
            return nil
        }
        let reason = reason ?? .exit(0)
        lastCrash = reason
        state = .crashed(reason)
        consecutiveFailures = uptime >= policy.healthyAfter ? 1 : consecutiveFailures + 1
        let delay = policy.delay(afterFailures: consecutiveFailures)
        state = .backoff(delay, after: reason)
        return delay
    }
}
