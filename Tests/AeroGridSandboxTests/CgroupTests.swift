import AeroGridSandbox
import Foundation
import Testing

/// cgroup v2 against a fake tree (these machines have v1 only): the files our code writes
/// and reads, laid out as the kernel does.
@Suite struct CgroupV2FakeTreeTests {
    let root = "/tmp/aerogrid-fake-cgroup2-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    func makeTree(leaf: String) throws {
        let manager = FileManager.default
        for directory in [root, "\(root)/aerogrid", "\(root)/aerogrid/demo", leaf] {
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (file, content) in [("cgroup.controllers", "cpuset cpu io memory hugetlb pids"), ("cgroup.subtree_control", "")] {
                try content.write(toFile: "\(directory)/\(file)", atomically: false, encoding: .utf8)
            }
        }
        let files = [
            "memory.max": "max", "memory.swap.max": "max", "pids.max": "max", "cpu.max": "max 100000",
            "cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 100",
            "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1", "memory.current": "1048576",
            "pids.current": "3", "cgroup.procs": "", "cgroup.kill": "",
        ]
        for (file, content) in files {
            try content.write(toFile: "\(leaf)/\(file)", atomically: false, encoding: .utf8)
        }
    }

    func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    @Test func limitsUsageAndKillUseTheV2Files() throws {
        let leaf = "\(root)/aerogrid/demo/ordersapp"
        try makeTree(leaf: leaf)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let hierarchy = CgroupV2Hierarchy(mountPoint: root)
        let group = try hierarchy.group(["demo", "ordersapp"])
        #expect(group.procsFiles == ["\(leaf)/cgroup.procs"])
        // Controllers are enabled for children on every inner node, never on the leaf.
        #expect(try read("\(root)/cgroup.subtree_control") == "+cpu +memory +pids")
        #expect(try read("\(root)/aerogrid/demo/cgroup.subtree_control") == "+cpu +memory +pids")
        #expect(try read("\(leaf)/cgroup.subtree_control") == "")

        try group.setLimits(CgroupLimits(memoryBytes: 256 << 20, cpus: 0.5, pids: 64))
        #expect(try read("\(leaf)/memory.max") == "268435456")
        #expect(try read("\(leaf)/memory.swap.max") == "0")
        #expect(try read("\(leaf)/pids.max") == "64")
        #expect(try read("\(leaf)/cpu.max") == "50000 100000")
        try group.setLimits(CgroupLimits())
        #expect(try read("\(leaf)/memory.max") == "max")
        #expect(try read("\(leaf)/cpu.max") == "max 100000")

        let usage = try group.usage()
        #expect(usage == CgroupUsage(cpuNanoseconds: 2_500_000, memoryBytes: 1 << 20, pids: 3, oomKills: 1, throttledPeriods: 4))
        #expect(try group.oomKills() == 1)
        try group.killAll()
        #expect(try read("\(leaf)/cgroup.kill") == "1")
    }

    @Test func detectionPicksV2WhenTheUnifiedMountHasControllers() throws {
        try makeTree(leaf: "\(root)/aerogrid/demo/x")
        defer { try? FileManager.default.removeItem(atPath: root) }
        guard case .v2(let hierarchy) = CgroupSupport.detect(mountPoint: root) else {
            Issue.record("expected v2")
            return
        }
        #expect(hierarchy.root == "\(root)/aerogrid")
    }

    @Test func noUsableHierarchyIsReportedAsDegraded() {
        guard case .unavailable(let reason) = CgroupSupport.detect(mountPoint: "/nonexistent-cgroup-root") else {
            Issue.record("expected unavailable")
            return
        }
        #expect(reason.contains("cgroup v1 lacks memory"))
    }

    @Test func invalidLimitsAreRefusedWithWhatToUse() {
        #expect(throws: SandboxError.self) { try CgroupLimits(memoryBytes: 1024).validate() }
        #expect(throws: SandboxError.self) { try CgroupLimits(cpus: 0).validate() }
        #expect(throws: SandboxError.self) { try CgroupLimits(pids: 0).validate() }
    }
}

extension SandboxSuite {
    /// cgroup v1, for real, as these machines have it.
    @Suite struct CgroupV1 {
        @Test func theHostIsDetectedAsV1AndMemoryCanBeRaisedAndLowered() throws {
            guard case .v1(let hierarchy) = Sandbox.cgroups else {
                Issue.record("these machines have cgroup v1: \(Sandbox.cgroups.summary)")
                return
            }
            let group = try hierarchy.group(["tests", "limits-\(getpid())"])
            defer { try? group.remove() }
            // memsw may never be below memory: raising and lowering both work in order.
            for megabytes in [64, 512, 32, 1024, 16] as [UInt64] {
                try group.setLimits(CgroupLimits(memoryBytes: megabytes << 20, cpus: 0.5, pids: 10))
                #expect(try cgroupFile(group, "memory", "memory.limit_in_bytes") == "\(megabytes << 20)")
            }
            try group.setLimits(CgroupLimits())
            #expect(try cgroupFile(group, "cpu", "cpu.cfs_quota_us") == "-1")
            #expect(try cgroupFile(group, "pids", "pids.max") == "max")
        }
    }
}
