import AeroGridSandbox
import Foundation
import Testing

extension SandboxSuite {
    /// A launcher learns how the app ended from its init's report, before the sandbox is torn
    /// down, and leaves the cgroup's removal to a helper (or does it itself for a named group).
    @Suite struct EarlyOutcome {
        @Test func theOutcomeComesFromTheInitsReportAndAHelperRemovesTheCgroup() async throws {
            var process: SandboxedProcess? = try Sandbox.launch(probeSpec(["/bin/sh", "-c", "exit 3"], cgroup: "early"))
            let directories = try #require(process?.cgroup?.directories)
            let pid = try #require(process?.pid)
            #expect(process?.appOutcome() == .exited(3))
            // Nothing has reaped the init or removed the group yet: that is the helper's job.
            #expect(directories.allSatisfy { FileManager.default.fileExists(atPath: $0) })
            #expect(process?.detachCleanup() == true)
            // Not while we may still read the group (its OOM counter, its last usage).
            try await Task.sleep(for: .milliseconds(200))
            #expect(directories.allSatisfy { FileManager.default.fileExists(atPath: $0) }, "kept while held")
            if let process { closeDescriptors(of: process) }
            process = nil
            #expect(await gone { directories }, "the helper removed \(directories) once let go")
            waitpid(pid, nil, 0)  // the init, which nothing else reaps in this process
        }

        @Test func aSignalIsReportedFromTheInitsReportToo() async throws {
            let process = try Sandbox.launch(probeSpec(["/bin/sh", "-c", "kill -TERM $$"], cgroup: "early"))
            #expect(process.appOutcome() == .signaled(SIGTERM))
            #expect(process.waitUntilExit() == .signaled(SIGTERM))
            #expect(process.cgroup.map { $0.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) } } == true)
            closeDescriptors(of: process)
        }

        @Test func theLauncherExitsWithTheAppsStatusAndItsOwnGroupGoesRightAfter() async throws {
            let (status, pid) = try runLauncher(["--", "/bin/sh", "-c", "exit 3"])
            #expect(status == 3)
            #expect(await gone { launcherGroups(of: pid) }, "a helper removes the launcher's own group")
        }

        @Test func aLauncherKilledWithSIGKILLLeavesNoGroupBehind() async throws {
            let launcher = Process()
            launcher.executableURL = URL(fileURLWithPath: launcherPath)
            launcher.arguments = ["run", "--profile", "\(repositoryRoot)/sandbox-profiles/python.json", "--", "/bin/sleep", "30"]
            try launcher.run()
            let pid = launcher.processIdentifier
            // Once the app runs (the init and sleep in the group), the helper does too.
            #expect(await eventually { launcherGroups(of: pid).contains { (try? processCount($0)) ?? 0 >= 2 } }, "the sandbox started")
            try await Task.sleep(for: .milliseconds(100))
            kill(pid, SIGKILL)
            launcher.waitUntilExit()
            // The init dies with its parent (PR_SET_PDEATHSIG), the helper removes the group.
            #expect(await gone { launcherGroups(of: pid) }, "the helper outlived the launcher and removed the group")
        }

        @Test func aNamedGroupIsGoneWhenTheLauncherExits() async throws {
            let name = "tests/launcher-\(UInt32.random(in: 0...UInt32.max))"
            let (status, _) = try runLauncher(["--cgroup", name, "--", "/bin/sh", "-c", "exit 4"])
            #expect(status == 4)
            // The next launch may want the name at once: no waiting here.
            #expect(launcherGroup(name).allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        }
    }
}

private func closeDescriptors(of process: SandboxedProcess) {
    for fd in [process.ipcSocket, process.stdout, process.stderr] { if let fd { close(fd) } }
}

/// The debug build of `aerogrid-sandbox`, which `swift build --build-tests` makes.
private let launcherPath = "\(repositoryRoot)/.build/debug/aerogrid-sandbox"

/// Runs the launcher with the python profile; its exit status and pid.
private func runLauncher(_ arguments: [String]) throws -> (status: Int32, pid: Int32) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: launcherPath)
    process.arguments = ["run", "--profile", "\(repositoryRoot)/sandbox-profiles/python.json"] + arguments
    try process.run()
    process.waitUntilExit()
    return (process.terminationStatus, process.processIdentifier)
}

/// Where the launcher's group `name` (under aerogrid/) is in every hierarchy of this host.
private func launcherGroup(_ name: String) -> [String] {
    switch Sandbox.cgroups {
    case .v1(let hierarchy): hierarchy.mounts.values.map { "\($0)/\(hierarchy.rootName)/\(name)" }
    case .v2(let hierarchy): ["\(hierarchy.root)/\(name)"]
    case .unavailable: []
    }
}

/// The directories of the launcher `pid`'s own group (`sandbox-PID-…`), in every hierarchy.
private func launcherGroups(of pid: Int32) -> [String] {
    let parents = launcherGroup("")
    return parents.flatMap { parent in
        ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [])
            .filter { $0.hasPrefix("sandbox-\(pid)-") }.map { "\(parent)\($0)" }
    }
}

/// The processes in a v1 or v2 group directory.
private func processCount(_ directory: String) throws -> Int {
    try String(contentsOfFile: "\(directory)/cgroup.procs", encoding: .utf8).split(separator: "\n").count
}

/// True once `condition` holds (polled every 10 ms for up to `seconds`).
private func eventually(within seconds: Int = 5, _ condition: () -> Bool) async -> Bool {
    for _ in 0..<(seconds * 100) {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return false
}

/// True once none of `directories()` exists (within two seconds).
private func gone(_ directories: () -> [String]) async -> Bool {
    await eventually(within: 2) { directories().allSatisfy { !FileManager.default.fileExists(atPath: $0) } }
}
