// aerogrid-sandbox: runs one command in an AeroGrid sandbox, stays as its monitor, and
// reports how it ended. No Foundation and a static standard library, so it starts in about
// two milliseconds; arguments are parsed by hand for the same reason.
import AeroGridSandbox

#if canImport(Glibc)
    import Glibc
#endif

let usage = """
    usage: aerogrid-sandbox run [options] -- COMMAND [ARG...]
           aerogrid-sandbox check PROFILE.json

    options:
      --profile FILE     seccomp profile (OCI JSON) with quota defaults (required)
      --memory SIZE      memory limit, e.g. 256M (default: the profile's)
      --cpu CORES        CPU limit in cores, e.g. 0.5
      --pids N           process and thread limit
      --nofile N         open file limit
      --fsize SIZE       largest file the app may write
      --tmp-size SIZE    size of the writable /tmp
      --ro PATH          mount a host path read-only at the same path (repeatable)
      --bundle DIR       mount DIR read-only at /app, the working directory
      --ipc-fd N         pass inherited descriptor N to the app as fd 3
      --env K=V          set an environment variable (repeatable; nothing else is passed)
      --cgroup PATH      cgroup under aerogrid/, e.g. demo/ordersapp (default: sandbox-PID-RANDOM)
      --host-uid N       unprivileged host uid the sandbox's root maps to (default 65534)
      --timeout SECONDS  kill the sandbox after this long and report "timeout"
      --report FILE      write how it ended as one JSON line to FILE ("-" for stderr)

    Exit status: the app's, 128+signal when killed (137 oom, 159 seccomp), 124 timeout,
    125 when the sandbox could not be set up.
    """

func fail(_ message: String, status: Int32 = 125) -> Never {
    writeLine(2, "aerogrid-sandbox: \(message)")
    exit(status)
}

func writeLine(_ fd: Int32, _ text: String) {
    var line = text + "\n"
    line.withUTF8 { buffer in _ = write(fd, buffer.baseAddress, buffer.count) }
}

struct Options {
    var profilePath: String?
    var memory: UInt64?
    var cpus: Double?
    var pids: Int?
    var openFiles: Int?
    var maxFileBytes: UInt64?
    var tmpBytes: UInt64?
    var readOnly: [String] = []
    var bundle: String?
    var ipcFD: Int32?
    var environment: [(String, String)] = []
    var cgroup: [String]?
    var hostUID: UInt32 = 65534
    var timeoutSeconds: Double?
    var report: String?
    var command: [String] = []
}

func parse(_ arguments: ArraySlice<String>) -> Options {
    var options = Options()
    var rest = arguments
    func value(_ flag: String) -> String {
        guard let value = rest.popFirst() else { fail("\(flag) needs a value\n\n\(usage)", status: 2) }
        return value
    }
    func number<T: LosslessStringConvertible>(_ flag: String, _: T.Type) -> T {
        let text = value(flag)
        guard let number = T(text) else { fail("\(flag) takes a number, not '\(text)'", status: 2) }
        return number
    }
    func size(_ flag: String) -> UInt64 {
        let text = value(flag)
        guard let bytes = parseSize(text) else { fail("\(flag) takes a size such as 64M, not '\(text)'", status: 2) }
        return bytes
    }
    while let flag = rest.popFirst() {
        switch flag {
        case "--":
            options.command = Array(rest)
            return options
        case "--profile": options.profilePath = value(flag)
        case "--memory": options.memory = size(flag)
        case "--cpu": options.cpus = number(flag, Double.self)
        case "--pids": options.pids = number(flag, Int.self)
        case "--nofile": options.openFiles = number(flag, Int.self)
        case "--fsize": options.maxFileBytes = size(flag)
        case "--tmp-size": options.tmpBytes = size(flag)
        case "--ro": options.readOnly.append(value(flag))
        case "--bundle": options.bundle = value(flag)
        case "--ipc-fd": options.ipcFD = number(flag, Int32.self)
        case "--env":
            let pair = value(flag)
            guard let equals = pair.firstIndex(of: "=") else { fail("--env takes K=V, not '\(pair)'", status: 2) }
            options.environment.append((String(pair[..<equals]), String(pair[pair.index(after: equals)...])))
        case "--cgroup": options.cgroup = value(flag).split(separator: "/").map(String.init)
        case "--host-uid": options.hostUID = number(flag, UInt32.self)
        case "--timeout": options.timeoutSeconds = number(flag, Double.self)
        case "--report": options.report = value(flag)
        case "-h", "--help":
            writeLine(1, usage)
            exit(0)
        default: fail("unknown option '\(flag)'\n\n\(usage)", status: 2)
        }
    }
    return options
}

func jsonString(_ text: String) -> String {
    var escaped = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": escaped += "\\\""
        case "\\": escaped += "\\\\"
        case "\n": escaped += "\\n"
        case _ where scalar.value < 0x20: escaped += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
        default: escaped.unicodeScalars.append(scalar)
        }
    }
    return escaped + "\""
}

func report(_ termination: Termination, usage: CgroupUsage?, to path: String?, degradation: String?) {
    guard let path else { return }
    var fields = ["\"termination\":\(jsonString(termination.description))", "\"status\":\(termination.shellStatus)"]
    switch termination {
    case .exited(let code): fields.append("\"exit_code\":\(code)")
    case .signaled(let signal): fields.append("\"signal\":\(signal)")
    default: break
    }
    if let usage {
        fields.append("\"cpu_ns\":\(usage.cpuNanoseconds)")
        fields.append("\"oom_kills\":\(usage.oomKills)")
        fields.append("\"throttled_periods\":\(usage.throttledPeriods)")
    }
    if let degradation { fields.append("\"degraded\":\(jsonString(degradation))") }
    let line = "{" + fields.joined(separator: ",") + "}"
    if path == "-" {
        writeLine(2, line)
    } else {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fail("cannot write the report to \(path)") }
        writeLine(fd, line)
        close(fd)
    }
}

/// Waits for the app to end, on this thread, with no other threads: SIGTERM, SIGINT and
/// SIGHUP (blocked, so they stay pending) are taken between polls and passed on to the
/// sandbox; past the deadline the sandbox is killed and reported as a timeout. Returns as
/// soon as the init has said how the app ended: the sandbox's teardown is not waited for.
func monitor(_ process: SandboxedProcess, signals: sigset_t, timeoutSeconds: Double?, readUsage: Bool) -> (Termination, CgroupUsage?) {
    let deadline = timeoutSeconds.map { now() + $0 }
    var usage: CgroupUsage?
    var pending = signals
    var noWait = timespec()
    while true {
        var pollFD = pollfd(fd: process.appEndedFD, events: Int16(POLLIN), revents: 0)
        if poll(&pollFD, 1, 50) == 1 { break }
        var info = siginfo_t()
        while sigtimedwait(&pending, &info, &noWait) > 0 { process.signal(info.si_signo) }
        if let deadline, now() >= deadline {
            process.timeOut()
            break
        }
        if readUsage { usage = process.usage() ?? usage }
    }
    let termination = process.appOutcome() ?? process.waitUntilExit()
    // The cgroup is still there (the helper removes it only once this process has exited):
    // its last reading goes in the report.
    if readUsage { usage = process.usage() ?? usage }
    return (termination, usage)
}

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else { fail(usage, status: 2) }
switch arguments[1] {
case "check":
    guard arguments.count == 3 else { fail(usage, status: 2) }
    do {
        let profile = try SeccompProfile.load(path: arguments[2])
        let filter = try SeccompFilter(profile: profile)
        writeLine(1, "\(arguments[2]): \(profile.rules.count) rules, \(filter.instructionCount) BPF instructions")
    } catch {
        fail(error.message, status: 1)
    }
case "run":
    let options = parse(arguments.dropFirst(2))
    guard !options.command.isEmpty else { fail("no command given after --\n\n\(usage)", status: 2) }
    guard let profilePath = options.profilePath else { fail("--profile is required (see sandbox-profiles/)", status: 2) }

    // Blocked before any thread starts, so they stay pending for `monitor`.
    var blocked = sigset_t()
    sigemptyset(&blocked)
    for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&blocked, signal) }
    pthread_sigmask(SIG_BLOCK, &blocked, nil)

    do {
        let compiled = try CompiledProfile.load(path: profilePath)
        var spec = SandboxSpec(command: options.command)
        let quotas = compiled.quotaDefaults
        spec.filter = compiled.filter
        spec.limits = CgroupLimits(memoryBytes: options.memory ?? quotas.memoryBytes, cpus: options.cpus ?? quotas.cpus, pids: options.pids ?? quotas.pids)
        spec.openFiles = options.openFiles ?? quotas.openFiles ?? spec.openFiles
        spec.maxFileBytes = options.maxFileBytes ?? spec.maxFileBytes
        spec.tmpBytes = options.tmpBytes ?? quotas.tmpBytes ?? spec.tmpBytes
        spec.readOnlyPaths = options.readOnly
        spec.bundle = options.bundle
        spec.inheritedIPCFD = options.ipcFD
        spec.environment = options.environment
        // Unique, not only by pid: a helper may still be removing an earlier launcher's group
        // when its pid is used again.
        spec.cgroupPath = options.cgroup ?? ["sandbox-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"]
        spec.hostUID = options.hostUID
        spec.output = .inherit
        spec.spawnOnCallingThread = true  // this thread lives as long as the app (PR_SET_PDEATHSIG)
        let process = try Sandbox.launch(spec)
        if let degradation = process.degradation { writeLine(2, "aerogrid-sandbox: warning: \(degradation)") }
        // A group of its own is removed by a helper once the sandbox is gone, started now,
        // while the app runs: the exit below then waits for no teardown (as bubblewrap's
        // does not), and the group goes even if this process is killed first. A named group
        // is removed before the exit: the next launch may want the name at once.
        let cleanupDetached = options.cgroup == nil && process.detachCleanup()
        let (termination, usage) = monitor(process, signals: blocked, timeoutSeconds: options.timeoutSeconds, readUsage: options.report != nil)
        report(termination, usage: usage, to: options.report, degradation: process.degradation)
        if !cleanupDetached { _ = process.waitUntilExit() }
        exit(termination.shellStatus)
    } catch {
        fail(error.message)
    }
default:
    fail("unknown command '\(arguments[1])'\n\n\(usage)", status: 2)
}
