import AeroGridSandbox
import Foundation
import Testing

/// The repository's root, found from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The hostile probe (Tests/SandboxProbes/probe.c), built with the C test driver.
let probePath: String = {
    let path = "\(repositoryRoot)/.build-c/probe"
    if !FileManager.default.isExecutableFile(atPath: path) {
        _ = try? shell(["\(repositoryRoot)/Tests/sandbox-c/build.sh"])
    }
    return path
}()

let pythonProfile: SeccompProfile = try! SeccompProfile.load(path: "\(repositoryRoot)/sandbox-profiles/python.json")
/// Compiled once for the whole run, as the runtime does.
let pythonFilter: SeccompFilter = try! SeccompFilter(profile: pythonProfile)

/// The real interpreter behind `python3` (pyenv's shim resolved), and its prefix.
let hostPython: (executable: String, prefix: String) = {
    let lines = (try? shell(["python3", "-c", "import sys; print(sys.executable); print(sys.base_prefix)"]))?.split(separator: "\n") ?? []
    return (String(lines.first ?? "python3"), String(lines.last ?? "/usr"))
}()

/// A sandbox like an app's: python.json's filter and the given limits.
func probeSpec(
    _ command: [String], limits: CgroupLimits = CgroupLimits(memoryBytes: 64 << 20, pids: 32),
    cgroup: String = "probe", tmp: UInt64 = 8 << 20
) -> SandboxSpec {
    SandboxSpec(
        command: command, filter: pythonFilter, limits: limits, openFiles: 64, maxFileBytes: 1 << 20,
        tmpBytes: tmp, readOnlyPaths: [hostPython.prefix], environment: [("PATH", "/usr/bin:/bin")],
        cgroupPath: ["tests", "\(cgroup)-\(UInt32.random(in: 0...UInt32.max))"], withIPCSocket: true)
}

/// Runs a sandbox to the end and returns what it printed and how it ended.
func runSandboxed(_ spec: SandboxSpec, timeout: Duration = .seconds(60)) async throws -> (output: String, termination: Termination) {
    let process = try Sandbox.launch(spec)
    let stdout = FileHandle(fileDescriptor: process.stdout!, closeOnDealloc: true)
    let stderr = FileHandle(fileDescriptor: process.stderr!, closeOnDealloc: true)
    async let output = Task.detached { stdout.readDataToEndOfFile() }.value
    async let errors = Task.detached { stderr.readDataToEndOfFile() }.value
    let termination = await process.wait(timeout: timeout)
    if let ipc = process.ipcSocket { close(ipc) }
    _ = await errors
    return (String(decoding: await output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), termination)
}

/// Runs a host program to the end and returns its standard output (any exit status).
@discardableResult
func shell(_ arguments: [String], environment: [String: String]? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Host processes running the probe binary: a sandbox must leave none behind.
func probeProcessesOnHost() -> Int {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.filter { Int($0) != nil }.count { pid in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) == probePath
    }
}

/// A second sandbox that echoes whatever arrives on its IPC socket: it must keep answering
/// whatever a probe next to it does.
final class EchoSandbox: Sendable {
    let process: SandboxedProcess

    init() throws {
        var spec = probeSpec(
            [
                hostPython.executable, "-S", "-c",
                """
                import socket
                s = socket.socket(fileno=3)
                while True:
                    data = s.recv(64)
                    if not data: break
                    s.sendall(data)
                """,
            ], limits: CgroupLimits(memoryBytes: 64 << 20, pids: 8), cgroup: "echo")
        spec.withIPCSocket = true
        spec.output = .discard
        process = try Sandbox.launch(spec)
    }

    /// True when a message comes back within a second.
    func answers() -> Bool {
        let fd = process.ipcSocket!
        let message = Array("ping-\(UInt16.random(in: 0...9999))".utf8)
        guard message.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == message.count else { return false }
        var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pollFD, 1, 1000) == 1 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count == message.count && Array(buffer[0..<count]) == message
    }

    func stop() async {
        _ = await process.stop(grace: .seconds(1))
        close(process.ipcSocket!)
    }
}
