import CSandboxSys
import CSeccomp

#if canImport(Glibc)
    import Glibc
#endif

/// A profile compiled to a classic BPF program, ready for the child to load with
/// `seccomp(2)` just before `execve`. Compiling allocates, so it happens in the parent,
/// before the clone; the child only copies these bytes into the kernel.
public struct SeccompFilter: Sendable {
    /// `struct sock_filter[]`, 8 bytes per instruction.
    public let program: [UInt8]

    public var instructionCount: Int { program.count / 8 }

    init(program: [UInt8]) {
        self.program = program
    }

    /// libseccomp's version, e.g. "2.5.4".
    static var libraryVersion: String {
        guard let version = seccomp_version() else { return "unknown" }
        return "\(version.pointee.major).\(version.pointee.minor).\(version.pointee.micro)"
    }

    /// Compiles `profile` for this machine's native architecture only: a system call made
    /// through any other ABI (32-bit `int 0x80`, x32) kills the whole process, which the
    /// supervisor records as a seccomp violation. (libseccomp's default for a foreign
    /// architecture kills only the calling thread.)
    public init(profile: SeccompProfile) throws(SandboxError) {
        guard let context = seccomp_init(profile.defaultAction.libseccompValue) else {
            throw SandboxError(.profile, "libseccomp could not start a filter")
        }
        defer { seccomp_release(context) }
        try Self.check(seccomp_attr_set(context, SCMP_FLTATR_ACT_BADARCH, SeccompProfile.Action.killProcess.libseccompValue), "set the bad-architecture action")
        // The binary-tree layout keeps a long allow-list cheap per system call.
        try Self.check(seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2), "ask for the binary-tree layout")
        // The sandbox sets no_new_privs itself, in its ordered setup.
        try Self.check(seccomp_attr_set(context, SCMP_FLTATR_CTL_NNP, 0), "leave no_new_privs to the sandbox")

        for rule in profile.rules {
            // A rule that repeats the default action is redundant, and libseccomp refuses it.
            guard rule.action != profile.defaultAction || !rule.args.isEmpty else { continue }
            var conditions = rule.args.map { arg in
                scmp_arg_cmp(arg: arg.index, op: Self.compare(arg.op), datum_a: arg.value, datum_b: arg.valueTwo)
            }
            for name in rule.names {
                let number = seccomp_syscall_resolve_name(name)
                let result = conditions.withUnsafeMutableBufferPointer { buffer in
                    seccomp_rule_add_array(context, rule.action.libseccompValue, number, UInt32(buffer.count), buffer.baseAddress)
                }
                try Self.check(result, "add the rule for '\(name)'")
            }
        }

        var size = 0
        let fd = sbx_export_bpf_to_memfd(UnsafeMutableRawPointer(context), &size)
        guard fd >= 0 else { throw SandboxError.system("cannot export the seccomp program", errno) }
        defer { close(fd) }
        var program = [UInt8](repeating: 0, count: size)
        let read = program.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard read == size else { throw SandboxError.system("cannot read the exported seccomp program", errno) }
        self.program = program
    }

    private static func check(_ result: Int32, _ what: String) throws(SandboxError) {
        guard result == 0 else {
            throw SandboxError(.profile, "libseccomp could not \(what): \(errnoDescription(-result))", errno: -result)
        }
    }

    private static func compare(_ op: SeccompProfile.Operator) -> scmp_compare {
        switch op {
        case .notEqual: SCMP_CMP_NE
        case .lessThan: SCMP_CMP_LT
        case .lessOrEqual: SCMP_CMP_LE
        case .equal: SCMP_CMP_EQ
        case .greaterOrEqual: SCMP_CMP_GE
        case .greaterThan: SCMP_CMP_GT
        case .maskedEqual: SCMP_CMP_MASKED_EQ
        }
    }
}
