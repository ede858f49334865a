#if canImport(Glibc)
    import Glibc
#endif

/// Resource limits of one sandbox (or of a tenant's parent group). nil = unlimited.
public struct CgroupLimits: Sendable, Equatable {
    public var memoryBytes: UInt64?
    /// CPU time as a number of cores: 0.5 is half of one core.
    public var cpus: Double?
    public var pids: Int?

    public init(memoryBytes: UInt64? = nil, cpus: Double? = nil, pids: Int? = nil) {
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
    }

    /// The CFS period both cgroup versions use here, and the quota for `cpus`.
    static let cpuPeriodMicroseconds: UInt64 = 100_000

    var cpuQuotaMicroseconds: UInt64? {
        cpus.map { UInt64(($0 * Double(Self.cpuPeriodMicroseconds)).rounded()) }
    }

    public func validate() throws(SandboxError) {
        if let memoryBytes, memoryBytes < 4 << 20 {
            throw SandboxError(.invalidArgument, "a memory limit of \(memoryBytes) bytes is too small: use at least 4M")
        }
        if let cpus, !(cpus >= 0.01 && cpus <= 1024) {
            throw SandboxError(.invalidArgument, "a CPU limit of \(cpus) is out of range: use 0.01 to 1024 cores")
        }
        if let pids, pids < 1 {
            throw SandboxError(.invalidArgument, "a pids limit of \(pids) is too small: use at least 1")
        }
    }
}

/// What a cgroup has used so far.
public struct CgroupUsage: Sendable, Equatable {
    public init(cpuNanoseconds: UInt64, memoryBytes: UInt64, pids: Int, oomKills: UInt64, throttledPeriods: UInt64) {
        self.cpuNanoseconds = cpuNanoseconds
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.oomKills = oomKills
        self.throttledPeriods = throttledPeriods
    }

    public var cpuNanoseconds: UInt64
    public var memoryBytes: UInt64
    public var pids: Int
    /// Processes the kernel's OOM killer killed in this group.
    public var oomKills: UInt64
    /// CFS periods in which the group hit its CPU quota.
    public var throttledPeriods: UInt64
}

/// One sandbox's cgroup (a directory per controller on v1, one directory on v2).
public protocol Cgroup: Sendable {
    /// Where it lives, for messages: `/sys/fs/cgroup/aerogrid/demo/ordersapp`.
    var displayPath: String { get }
    /// Its directories (one per controller on v1), for removing it from outside this library.
    var directories: [String] { get }
    /// The `cgroup.procs` files a process is written into to join the group.
    var procsFiles: [String] { get }
    /// Files a single-threaded process joins the group through by writing "0" (itself),
    /// when the hierarchy has them (v1 `tasks`): that takes no global lock, where a pid
    /// written to `cgroup.procs` waits for an RCU grace period (about 10 ms).
    var selfJoinFiles: [String]? { get }
    func setLimits(_ limits: CgroupLimits) throws(SandboxError)
    func usage() throws(SandboxError) -> CgroupUsage
    /// Processes the OOM killer killed in the group: one file, for telling an OOM kill
    /// from another SIGKILL when a sandbox ends.
    func oomKills() throws(SandboxError) -> UInt64
    /// The processes in the group now.
    func processes() throws(SandboxError) -> [Int32]
    /// Kills every process in the group, even ones that double-forked or ignore SIGTERM,
    /// and returns once the group is empty.
    func killAll() throws(SandboxError)
    /// Removes the (empty) group.
    func remove() throws(SandboxError)
}

/// The host's cgroup hierarchy: where groups are created.
public protocol CgroupHierarchy: Sendable {
    var version: Int { get }
    /// Creates (or reuses) the group at `path` under our own root, with each parent, and
    /// returns it. `path` is e.g. `["demo", "ordersapp"]`.
    func group(_ path: [String]) throws(SandboxError) -> any Cgroup
}

/// Which cgroup version the host offers, found as the kernel documents it.
public enum CgroupSupport: Sendable {
    case v2(CgroupV2Hierarchy)
    case v1(CgroupV1Hierarchy)
    /// No writable hierarchy (an unprivileged laptop, a locked-down container): sandboxes
    /// run with rlimits only. The reason is for status lines and logs.
    case unavailable(reason: String)

    /// v2 when `/sys/fs/cgroup/cgroup.controllers` exists (a unified mount), else v1 when
    /// the memory, pids and cpu controllers are mounted; checked writable by creating our
    /// own `aerogrid` group.
    public static func detect(mountPoint: String = "/sys/fs/cgroup", rootName: String = "aerogrid") -> CgroupSupport {
        if SysFS.exists("\(mountPoint)/cgroup.controllers") {
            let hierarchy = CgroupV2Hierarchy(mountPoint: mountPoint, rootName: rootName)
            do {
                try hierarchy.prepareRoot()
                return .v2(hierarchy)
            } catch {
                return .unavailable(reason: "cgroup v2 is mounted at \(mountPoint) but not writable: \(error.message)")
            }
        }
        let controllers = ["memory", "pids", "cpu", "cpuacct", "freezer"]
        let missing = controllers.filter { !SysFS.isDirectory("\(mountPoint)/\($0)") }
        guard missing.isEmpty else {
            return .unavailable(reason: "no cgroup v2 mount, and cgroup v1 lacks \(missing.joined(separator: ", ")) under \(mountPoint)")
        }
        let hierarchy = CgroupV1Hierarchy(
            mounts: Dictionary(uniqueKeysWithValues: controllers.map { ($0, "\(mountPoint)/\($0)") }), rootName: rootName)
        do {
            try hierarchy.prepareRoot()
            return .v1(hierarchy)
        } catch {
            return .unavailable(reason: "cgroup v1 controllers under \(mountPoint) are not writable: \(error.message)")
        }
    }

    public var hierarchy: (any CgroupHierarchy)? {
        switch self {
        case .v2(let hierarchy): hierarchy
        case .v1(let hierarchy): hierarchy
        case .unavailable: nil
        }
    }

    public var summary: String {
        switch self {
        case .v2(let hierarchy): "cgroup v2 at \(hierarchy.root)"
        case .v1(let hierarchy): "cgroup v1 under \(hierarchy.mounts["memory"] ?? "?")/\(hierarchy.rootName)"
        case .unavailable(let reason): "no cgroups (rlimits only): \(reason)"
        }
    }
}

/// Sends SIGKILL to every listed process until the group reports none left.
func killUntilEmpty(_ group: some Cgroup, freezeWhileKilling: () throws(SandboxError) -> Void = {}, thaw: () throws(SandboxError) -> Void = {})
    throws(SandboxError)
{
    for _ in 0..<200 {
        let pids = try group.processes()
        if pids.isEmpty { return }
        try freezeWhileKilling()
        for pid in pids { kill(pid, SIGKILL) }
        try thaw()
        usleep(5_000)
    }
    throw SandboxError(.cgroup, "processes in \(group.displayPath) survived SIGKILL for a second")
}
