#if canImport(Glibc)
    import Glibc
#endif

/// The legacy hierarchies (cgroup v1): one mount per controller, each with its own tree of
/// our groups. `cpu` and `cpuacct` may be separate mounts, as on these build machines.
public struct CgroupV1Hierarchy: CgroupHierarchy {
    /// Mount point of each controller: memory, pids, cpu, cpuacct, freezer.
    public let mounts: [String: String]
    public let rootName: String
    public var version: Int { 1 }

    public init(mounts: [String: String], rootName: String = "aerogrid") {
        self.mounts = mounts
        self.rootName = rootName
    }

    func prepareRoot() throws(SandboxError) {
        for mount in mounts.values.sorted() { try SysFS.makeDirectories("\(mount)/\(rootName)") }
    }

    public func group(_ path: [String]) throws(SandboxError) -> any Cgroup {
        var directories: [String: String] = [:]
        for (controller, mount) in mounts {
            let directory = ([mount, rootName] + path).joined(separator: "/")
            try SysFS.makeDirectories(directory)
            directories[controller] = directory
        }
        return CgroupV1Group(directoryByController: directories)
    }
}

struct CgroupV1Group: Cgroup {
    /// This group's directory in each controller's hierarchy.
    let directoryByController: [String: String]

    var displayPath: String { directoryByController["memory"] ?? directories.first ?? "?" }
    var directories: [String] { directoryByController.values.sorted() }
    var procsFiles: [String] { directoryByController.keys.sorted().map { "\(directoryByController[$0]!)/cgroup.procs" } }
    var selfJoinFiles: [String]? { directoryByController.keys.sorted().map { "\(directoryByController[$0]!)/tasks" } }

    private func file(_ controller: String, _ name: String) -> String {
        "\(directoryByController[controller]!)/\(name)"
    }

    func setLimits(_ limits: CgroupLimits) throws(SandboxError) {
        try limits.validate()
        try setMemory(limits.memoryBytes)
        try SysFS.write(file("pids", "pids.max"), limits.pids.map(String.init) ?? "max")
        try SysFS.write(file("cpu", "cpu.cfs_period_us"), String(CgroupLimits.cpuPeriodMicroseconds))
        try SysFS.write(file("cpu", "cpu.cfs_quota_us"), limits.cpuQuotaMicroseconds.map(String.init) ?? "-1")
    }

    /// memory + swap (memsw) may never be below memory alone, so when raising the limit
    /// memsw goes first, and when lowering it goes last. Setting both equal forbids swap.
    private func setMemory(_ bytes: UInt64?) throws(SandboxError) {
        let limit = bytes.map(String.init) ?? "-1"
        let memsw = file("memory", "memory.memsw.limit_in_bytes")
        guard SysFS.exists(memsw) else {
            try SysFS.write(file("memory", "memory.limit_in_bytes"), limit)
            return
        }
        let current = (try? SysFS.number(file("memory", "memory.limit_in_bytes"))) ?? UInt64.max
        if bytes ?? UInt64.max > current {
            try SysFS.write(memsw, limit)
            try SysFS.write(file("memory", "memory.limit_in_bytes"), limit)
        } else {
            try SysFS.write(file("memory", "memory.limit_in_bytes"), limit)
            try SysFS.write(memsw, limit)
        }
    }

    func usage() throws(SandboxError) -> CgroupUsage {
        let oom = try SysFS.keyedValues(file("memory", "memory.oom_control"))
        let cpu = try SysFS.keyedValues(file("cpu", "cpu.stat"))
        return CgroupUsage(
            cpuNanoseconds: try SysFS.number(file("cpuacct", "cpuacct.usage")),
            memoryBytes: try SysFS.number(file("memory", "memory.usage_in_bytes")),
            pids: Int(try SysFS.number(file("pids", "pids.current"))),
            oomKills: oom["oom_kill"] ?? 0,
            throttledPeriods: cpu["nr_throttled"] ?? 0)
    }

    func oomKills() throws(SandboxError) -> UInt64 {
        try SysFS.keyedValues(file("memory", "memory.oom_control"))["oom_kill"] ?? 0
    }

    func processes() throws(SandboxError) -> [Int32] {
        // Every process joins every controller's group, so one listing is the truth.
        try SysFS.pids(file("pids", "cgroup.procs"))
    }

    /// Freezes the group so nothing can fork while the kill goes round, kills every
    /// process, thaws so the kernel can deliver the kills, and repeats until empty.
    func killAll() throws(SandboxError) {
        let state = file("freezer", "freezer.state")
        try killUntilEmpty(
            self,
            freezeWhileKilling: { () throws(SandboxError) in
                try SysFS.write(state, "FROZEN")
                for _ in 0..<100 where (try? SysFS.read(state).trimmingWhitespace()) != "FROZEN" { usleep(1_000) }
            },
            thaw: { () throws(SandboxError) in try SysFS.write(state, "THAWED") })
    }

    func remove() throws(SandboxError) {
        for directory in directories { try SysFS.removeDirectory(directory) }
    }
}
