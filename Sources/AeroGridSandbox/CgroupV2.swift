#if canImport(Glibc)
    import Glibc
#endif

/// The unified hierarchy (cgroup v2): one directory per group, controllers enabled for
/// children through each parent's `cgroup.subtree_control`.
public struct CgroupV2Hierarchy: CgroupHierarchy {
    public let mountPoint: String
    public let rootName: String
    public var version: Int { 2 }
    public var root: String { "\(mountPoint)/\(rootName)" }

    static let controllers = ["cpu", "memory", "pids"]

    public init(mountPoint: String = "/sys/fs/cgroup", rootName: String = "aerogrid") {
        self.mountPoint = mountPoint
        self.rootName = rootName
    }

    func prepareRoot() throws(SandboxError) {
        try SysFS.makeDirectories(root)
        try enableControllers(in: mountPoint)
        try enableControllers(in: root)
    }

    public func group(_ path: [String]) throws(SandboxError) -> any Cgroup {
        try prepareRoot()
        var directory = root
        for component in path {
            directory += "/" + component
            try SysFS.makeDirectories(directory)
            if component != path.last { try enableControllers(in: directory) }
        }
        return CgroupV2Group(path: directory)
    }

    /// Lets the children of `directory` use our controllers (a group with processes of
    /// its own cannot, so only our inner nodes get this).
    private func enableControllers(in directory: String) throws(SandboxError) {
        let available = Set(try SysFS.read("\(directory)/cgroup.controllers").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        let wanted = Self.controllers.filter(available.contains)
        guard !wanted.isEmpty else { return }
        try SysFS.write("\(directory)/cgroup.subtree_control", wanted.map { "+\($0)" }.joined(separator: " "))
    }
}

struct CgroupV2Group: Cgroup {
    let path: String
    var displayPath: String { path }
    var directories: [String] { [path] }
    var procsFiles: [String] { ["\(path)/cgroup.procs"] }
    var selfJoinFiles: [String]? { nil }

    func setLimits(_ limits: CgroupLimits) throws(SandboxError) {
        try limits.validate()
        try SysFS.write("\(path)/memory.max", limits.memoryBytes.map(String.init) ?? "max")
        // No swap: a memory limit that swap could stretch is no limit.
        if SysFS.exists("\(path)/memory.swap.max") { try SysFS.write("\(path)/memory.swap.max", "0") }
        try SysFS.write("\(path)/pids.max", limits.pids.map(String.init) ?? "max")
        let quota = limits.cpuQuotaMicroseconds.map(String.init) ?? "max"
        try SysFS.write("\(path)/cpu.max", "\(quota) \(CgroupLimits.cpuPeriodMicroseconds)")
    }

    func usage() throws(SandboxError) -> CgroupUsage {
        let cpu = try SysFS.keyedValues("\(path)/cpu.stat")
        let events = try SysFS.keyedValues("\(path)/memory.events")
        return CgroupUsage(
            cpuNanoseconds: (cpu["usage_usec"] ?? 0) * 1000,
            memoryBytes: try SysFS.number("\(path)/memory.current"),
            pids: Int(try SysFS.number("\(path)/pids.current")),
            oomKills: events["oom_kill"] ?? 0,
            throttledPeriods: cpu["nr_throttled"] ?? 0)
    }

    func oomKills() throws(SandboxError) -> UInt64 {
        try SysFS.keyedValues("\(path)/memory.events")["oom_kill"] ?? 0
    }

    func processes() throws(SandboxError) -> [Int32] {
        try SysFS.pids("\(path)/cgroup.procs")
    }

    func killAll() throws(SandboxError) {
        // cgroup.kill (Linux 5.14+) kills the whole group at once, new forks included.
        if SysFS.exists("\(path)/cgroup.kill") {
            try SysFS.write("\(path)/cgroup.kill", "1")
            try killUntilEmpty(self)
            return
        }
        try killUntilEmpty(
            self,
            freezeWhileKilling: { () throws(SandboxError) in try SysFS.write("\(path)/cgroup.freeze", "1") },
            thaw: { () throws(SandboxError) in try SysFS.write("\(path)/cgroup.freeze", "0") })
    }

    func remove() throws(SandboxError) {
        try SysFS.removeDirectory(path)
    }
}
