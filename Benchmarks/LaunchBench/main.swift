// aerogrid-launch-bench: what a sandbox start costs the supervisor, measured inside it.
//
// `Benchmarks/sandbox_startup.py` times the command-line launcher from outside; the
// supervisor does not use that launcher but calls `Sandbox.launch` in its own process, with
// the spec an app gets (the profile's filter and quotas, a cgroup at tenant/app, pipes for
// its output, the IPC socket) and waits with `SandboxedProcess.wait()`, which returns once
// the sandbox is gone and its cgroup removed. This helper does exactly that, one start per
// request, so the script can interleave it with its other variants in the same seeded
// order; next to it, a bare `posix_spawn` + `waitpid` from the same process.
//
// Requests on stdin, one JSON object a line: {"variant": "sandbox" | "bare", "argv": [...]}.
// Replies on stdout: {"ms": wall time from the start call to the end of the wait,
// "status": the shell-style exit status}. Started by the script with `--profile FILE`.
import AeroGridSandbox
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

struct Request: Decodable {
    let variant: String
    let argv: [String]
}

struct Reply: Encodable {
    let ms: Double
    let status: Int32
    let error: String?
}

let arguments = CommandLine.arguments
guard let profileIndex = arguments.firstIndex(of: "--profile"), profileIndex + 1 < arguments.count else {
    FileHandle.standardError.write(Data("usage: aerogrid-launch-bench --profile FILE (requests on stdin)\n".utf8))
    exit(2)
}
let profile = try CompiledProfile.load(path: arguments[profileIndex + 1])
/// Where the supervisor puts an app's cgroup: under its tenant's, named after the app.
let cgroupPath = ["launch-bench", "app"]

func milliseconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
}

/// A start as the supervisor makes it (AppRunner's sandbox spec), to the end of its wait.
func sandboxed(_ argv: [String]) async -> Reply {
    var spec = SandboxSpec(command: argv)
    spec.filter = profile.filter
    let quotas = profile.quotaDefaults
    spec.limits = CgroupLimits(memoryBytes: quotas.memoryBytes, cpus: quotas.cpus, pids: quotas.pids)
    spec.openFiles = quotas.openFiles ?? 256
    spec.tmpBytes = quotas.tmpBytes ?? 64 << 20
    spec.cgroupPath = cgroupPath
    spec.withIPCSocket = true
    spec.output = .pipes
    let start = ContinuousClock.now
    let process: SandboxedProcess
    do {
        process = try Sandbox.launch(spec)
    } catch {
        return Reply(ms: milliseconds(since: start), status: 1, error: error.message)
    }
    let termination = await process.wait()
    let ms = milliseconds(since: start)
    for fd in [process.stdout, process.stderr, process.ipcSocket].compactMap({ $0 }) { close(fd) }
    if let degradation = process.degradation { return Reply(ms: ms, status: 1, error: degradation) }
    return Reply(ms: ms, status: termination.shellStatus, error: nil)
}

/// The same command without a sandbox, from the same process: `posix_spawn`, `waitpid`.
func bare(_ argv: [String]) -> Reply {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
    let cArguments = argv.map { strdup($0) } + [nil]
    defer { cArguments.forEach { free($0) } }
    let environment: [UnsafeMutablePointer<CChar>?] = [nil]
    let start = ContinuousClock.now
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environment)
    guard spawned == 0 else { return Reply(ms: milliseconds(since: start), status: 127, error: String(cString: strerror(spawned))) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let ms = milliseconds(since: start)
    let signal = status & 0x7f
    return Reply(ms: ms, status: signal == 0 ? (status >> 8) & 0xff : 128 + signal, error: nil)
}

let decoder = JSONDecoder()
let encoder = JSONEncoder()
while let line = readLine() {
    let reply: Reply
    do {
        let request = try decoder.decode(Request.self, from: Data(line.utf8))
        guard !request.argv.isEmpty else { throw CocoaError(.coderInvalidValue) }
        switch request.variant {
        case "sandbox": reply = await sandboxed(request.argv)
        case "bare": reply = bare(request.argv)
        default: reply = Reply(ms: 0, status: 2, error: "unknown variant \(request.variant): sandbox or bare")
        }
    } catch {
        reply = Reply(ms: 0, status: 2, error: "a request is one JSON object a line, {\"variant\": ..., \"argv\": [...]}: \(error)")
    }
    FileHandle.standardOutput.write(try encoder.encode(reply) + Data("\n".utf8))
}
// The tenant's group stays after its app's (the supervisor's does too); ours goes at the end.
Sandbox.removeCgroups([cgroupPath, ["launch-bench"]])
