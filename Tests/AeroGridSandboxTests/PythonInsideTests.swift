import AeroGridSandbox
import Foundation
import Testing

extension SandboxSuite {
    /// CPython 3.11 under python.json, asserting the sandbox from inside.
    @Suite struct PythonInside {
        @Test func cpythonSeesTheSandboxAndTalksOverFD3() async throws {
            var spec = probeSpec([hostPython.executable, "-S", "/app/inside.py"], limits: CgroupLimits(memoryBytes: 128 << 20, pids: 16))
            spec.bundle = "\(repositoryRoot)/Tests/sandbox-c"
            spec.environment = [("LANG", "C.UTF-8")]
            spec.maxFileBytes = 64 << 20
            let process = try Sandbox.launch(spec)
            let output = FileHandle(fileDescriptor: process.stdout!, closeOnDealloc: true)
            let reading = Task.detached { output.readDataToEndOfFile() }
            // inside.py sends a line over fd 3 and expects it echoed.
            let fd = process.ipcSocket!
            var buffer = [UInt8](repeating: 0, count: 256)
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            #expect(received > 0)
            _ = buffer.withUnsafeBytes { send(fd, $0.baseAddress, received, 0) }
            let termination = await process.wait(timeout: .seconds(20))
            close(fd)
            let lines = String(decoding: await reading.value, as: UTF8.self).split(separator: "\n")
            var fields: [String: String] = [:]
            for line in lines {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            #expect(termination == .exited(0), "\(lines)")
            #expect(fields["Seccomp"] == "2")
            #expect(fields["NoNewPrivs"] == "1")
            for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                #expect(fields[cap] == "0000000000000000", "\(cap)")
            }
            for namespace in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"] {
                let host = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/\(namespace)")
                #expect(fields["ns_\(namespace)"] != nil && fields["ns_\(namespace)"] != host, "\(namespace) namespace")
            }
            #expect(fields["uid_map"] == "0 65534 1", "the sandbox's root is host uid 65534, not 0")
            #expect(fields["fds"] == "0,1,2,3")
            #expect(fields["env"] == "LANG")
            #expect(fields["socket_AF_INET"] == "EPERM")
            #expect(fields["socket_unix"] == "ok")
            #expect(fields["imports"] == "ok", "json, asyncio, struct, dataclasses import")
            #expect(fields["ipc"] == "ping from the app", "a message went both ways over fd 3")
            #expect(fields["write_root"] == "EROFS" && fields["write_app"] == "EROFS" && fields["write_python"] == "EROFS")
            #expect(fields["tmp_fill"] == "ENOSPC kb=8192")
        }
    }
}
