import AeroGridSandbox
import Foundation
import Testing

extension SandboxSuite {
    /// Limits enforced by the cgroup (v1 on these machines, for real), and how a sandbox
    /// that hits them is reported.
    @Suite struct ResourceLimits {
        @Test func touchingAGibibyteUnder128MiBIsReportedAsOOMFromTheCounter() async throws {
            let onHost = try shell([probePath, "alloc-touch", "1024"])
            #expect(onHost.contains("result=ok mb=1024"), "the host can allocate it: \(onHost)")
            let (_, termination) = try await runSandboxed(
                probeSpec([probePath, "alloc-touch", "1024"], limits: CgroupLimits(memoryBytes: 128 << 20, pids: 32)))
            #expect(termination == .oom)
        }

        @Test func aSIGKILLFromOutsideIsASignalNotAnOOM() async throws {
            let process = try Sandbox.launch(probeSpec([probePath, "busy-loop", "30"]))
            try await Task.sleep(for: .milliseconds(300))
            process.signal(SIGKILL)
            let termination = await process.wait()
            #expect(termination == .signaled(SIGKILL))
        }

        @Test func halfACPUIsThrottledToHalfACPU() async throws {
            let process = try Sandbox.launch(probeSpec([probePath, "busy-loop", "8"], limits: CgroupLimits(cpus: 0.5, pids: 8)))
            try await Task.sleep(for: .milliseconds(500))
            let before = try #require(process.usage())
            let clock = ContinuousClock.now
            try await Task.sleep(for: .seconds(5))
            let after = try #require(process.usage())
            let elapsed = ContinuousClock.now - clock
            let share =
                Double(after.cpuNanoseconds - before.cpuNanoseconds) / (Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9)
            #expect(share > 0.4 && share < 0.6, "CPU share \(share) over 5 s, from cpuacct")
            #expect(after.throttledPeriods > 0, "nr_throttled")
            process.kill()
            _ = await process.wait()
        }

        /// The host's whole process count is compared by Tests/sandbox-c/test.sh, which runs
        /// alone; here other suites start processes at the same time, so the check is that
        /// none of the bomb's processes is left.
        @Test func aForkBombStopsAtThePidsCapAndLeavesNothingBehind() async throws {
            let (output, _) = try await runSandboxed(probeSpec([probePath, "fork-bomb", "500"], limits: CgroupLimits(pids: 16)))
            #expect(output.firstMatch(of: /result=errno errno=EAGAIN forked=1[0-5] cap=500$/) != nil, "\(output)")
            #expect(probeProcessesOnHost() == 0)
        }

        @Test func limitsChangeOnARunningSandboxWithoutARestart() async throws {
            let process = try Sandbox.launch(probeSpec([probePath, "busy-loop", "30"], limits: CgroupLimits(memoryBytes: 64 << 20, cpus: 0.5, pids: 16)))
            let cgroup = try #require(process.cgroup)
            try process.updateLimits(CgroupLimits(memoryBytes: 256 << 20, cpus: 1.5, pids: 40))
            #expect(try cgroupFile(cgroup, "memory", "memory.limit_in_bytes") == "\(256 << 20)")
            #expect(try cgroupFile(cgroup, "cpu", "cpu.cfs_quota_us") == "150000")
            #expect(try cgroupFile(cgroup, "pids", "pids.max") == "40")
            try process.updateLimits(CgroupLimits(memoryBytes: 32 << 20, cpus: 0.25, pids: 10))
            #expect(try cgroupFile(cgroup, "memory", "memory.limit_in_bytes") == "\(32 << 20)")
            #expect(try cgroupFile(cgroup, "memory", "memory.memsw.limit_in_bytes") == "\(32 << 20)")
            #expect(try cgroupFile(cgroup, "cpu", "cpu.cfs_quota_us") == "25000")
            process.kill()
            #expect(await process.wait() == .signaled(SIGKILL))
        }

        @Test func aSIGTERMIgnoringDoubleForkIsGoneAfterTheGracePeriod() async throws {
            let process = try Sandbox.launch(probeSpec([probePath, "ignore-term-doublefork", "30"]))
            try await Task.sleep(for: .milliseconds(500))
            #expect(probeProcessesOnHost() >= 2, "the probe and its double-forked child run")
            let started = ContinuousClock.now
            _ = await process.stop(grace: .milliseconds(500))
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(probeProcessesOnHost() == 0)
            #expect(!FileManager.default.fileExists(atPath: try #require(process.cgroup).displayPath), "the cgroup was removed")
        }

        @Test(arguments: ["x32-syscall", "i386-syscall"])
        func anotherABIIsKilledAndReportedAsASeccompViolation(_ probe: String) async throws {
            let onHost = try shell([probePath, probe])
            #expect(onHost.contains("result="), "the host runs it: \(onHost)")
            let (_, termination) = try await runSandboxed(probeSpec([probePath, probe]))
            #expect(termination == .seccomp)
        }

        @Test func aSetuidBinaryGainsNothing() async throws {
            let directory = try makeSetuidCopy()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            // On the host an unprivileged user gains euid 0 through the setuid copy.
            let onHost = try shell([
                "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "\(directory)/probe", "setuid-exec", "\(directory)/probe-suid",
            ])
            #expect(onHost.contains("euid=0"), "\(onHost)")
            var spec = probeSpec(["\(directory)/probe", "setuid-exec", "\(directory)/probe-suid"])
            spec.readOnlyPaths.append(directory)
            let (output, _) = try await runSandboxed(spec)
            // Inside, the setuid bit changes nothing: no capability is gained.
            #expect(output.contains("child=[result=ok uid=0 euid=0 capeff=0000000000000000]"), "\(output)")
        }
    }
}

func cgroupFile(_ cgroup: any Cgroup, _ controller: String, _ file: String) throws -> String {
    let memoryPath = cgroup.displayPath
    let path = memoryPath.replacingOccurrences(of: "/sys/fs/cgroup/memory/", with: "/sys/fs/cgroup/\(controller)/") + "/\(file)"
    return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A root-owned setuid copy of the probe in a directory anyone can search.
func makeSetuidCopy() throws -> String {
    let directory = "/tmp/aerogrid-suid-\(getpid())-\(UInt16.random(in: 0...9999))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    try FileManager.default.copyItem(atPath: probePath, toPath: "\(directory)/probe")
    try FileManager.default.copyItem(atPath: probePath, toPath: "\(directory)/probe-suid")
    chmod("\(directory)/probe-suid", 0o4755)
    return directory
}
