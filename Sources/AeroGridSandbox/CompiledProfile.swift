#if canImport(Glibc)
    import Glibc
#endif

/// A profile's filter and quota defaults, compiled once and kept on disk by the hash of the
/// profile's bytes. Checking and compiling a 150-rule profile takes about 1.5 ms, a good
/// part of a sandbox's start-up; reading the compiled form back takes a tenth of that.
public struct CompiledProfile: Sendable {
    public let filter: SeccompFilter
    public let quotaDefaults: SeccompProfile.QuotaDefaults

    /// Loads `path`, from `cacheDirectory` when this exact profile was compiled before.
    /// The cache is only an accelerator: any problem with it means compiling again. It is
    /// trusted only when it and its directory belong to this process's user and nobody else
    /// may write them: a filter someone else could have written would be the sandbox's.
    public static func load(path: String, cacheDirectory: String = "/run/aerogrid/filters") throws(SandboxError) -> CompiledProfile {
        let bytes: [UInt8]
        do {
            bytes = try SysFS.readBytes(path)
        } catch {
            throw SandboxError(.profile, "seccomp profile \(path): \(error.message)")
        }
        // A cache hit, the common case, never makes the profile a String: on the way to
        // every sandbox's clone, that is most of what the load costs.
        let cachePath = "\(cacheDirectory)/\(fnv1a64(bytes, libseccompVersion.utf8)).bpf"
        let trusted = isTrusted(directory: cacheDirectory)
        if trusted, let cached = readCache(cachePath) { return cached }
        let profile = try SeccompProfile.parse(String(decoding: bytes, as: UTF8.self), source: path)
        let compiled = CompiledProfile(filter: try SeccompFilter(profile: profile), quotaDefaults: profile.quotaDefaults)
        if !trusted {
            try? SysFS.makeDirectories(cacheDirectory)
            guard isTrusted(directory: cacheDirectory) else { return compiled }
        }
        compiled.writeCache(cachePath)
        return compiled
    }

    init(filter: SeccompFilter, quotaDefaults: SeccompProfile.QuotaDefaults) {
        self.filter = filter
        self.quotaDefaults = quotaDefaults
    }

    /// One header line of quota defaults, then the BPF program.
    private func writeCache(_ path: String) {
        let q = quotaDefaults
        let header =
            "aerogrid-bpf-1 \(q.memoryBytes.map(String.init) ?? "-") \(q.cpus.map { String($0) } ?? "-") \(q.pids.map(String.init) ?? "-") \(q.openFiles.map(String.init) ?? "-") \(q.tmpBytes.map(String.init) ?? "-")\n"
        let temporary = "\(path).\(getpid())"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let bytes = Array(header.utf8) + filter.program
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        // Readers see either no file or a complete one.
        if written == bytes.count { rename(temporary, path) } else { unlink(temporary) }
    }

    /// Owned by us and writable by nobody else (so no one else can have put a file in it).
    static func isTrusted(directory: String) -> Bool {
        var info = stat()
        guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return false }
        return info.st_uid == geteuid() && info.st_mode & 0o022 == 0
    }

    private static func readCache(_ path: String) -> CompiledProfile? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0, info.st_size < 1 << 20 else { return nil }
        // A regular file of ours that nobody else could have written.
        guard info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), info.st_mode & 0o022 == 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: Int(info.st_size))
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0, let newline = buffer[0..<count].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let fields = String(decoding: buffer[0..<newline], as: UTF8.self).split(separator: " ").map(String.init)
        let program = Array(buffer[(newline + 1)..<count])
        guard fields.count == 6, fields[0] == "aerogrid-bpf-1", !program.isEmpty, program.count % 8 == 0 else { return nil }
        let quotas = SeccompProfile.QuotaDefaults(
            memoryBytes: UInt64(fields[1]), cpus: Double(fields[2]), pids: Int(fields[3]),
            openFiles: Int(fields[4]), tmpBytes: UInt64(fields[5]))
        return CompiledProfile(filter: SeccompFilter(program: program), quotaDefaults: quotas)
    }

    /// Part of the cache key: another libseccomp may compile the same profile differently.
    private static let libseccompVersion: String = SeccompFilter.libraryVersion
}

/// FNV-1a, 64 bits, of `bytes` followed by `suffix`, as 16 hex digits: a cache key, not
/// a security measure.
func fnv1a64(_ bytes: [UInt8], _ suffix: String.UTF8View) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    for byte in suffix {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    let hex = Array("0123456789abcdef".utf8)
    return String(decoding: (0..<16).map { hex[Int((hash >> (60 - 4 * UInt64($0))) & 0xf)] }, as: UTF8.self)
}
