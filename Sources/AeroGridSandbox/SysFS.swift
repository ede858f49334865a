#if canImport(Glibc)
    import Glibc
#endif

/// Small file operations on plain POSIX calls. The sandbox module avoids Foundation so
/// that the launcher starts in about 2 ms (Foundation alone costs about 5).
enum SysFS {
    static func read(_ path: String, limit: Int = 1 << 20) throws(SandboxError) -> String {
        String(decoding: try readBytes(path, limit: limit), as: UTF8.self)
    }

    static func readBytes(_ path: String, limit: Int = 1 << 20) throws(SandboxError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.system("cannot open \(path)", errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        // cgroup and profile files are small: a small buffer, grown only when one is not.
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SandboxError.system("cannot read \(path)", errno)
            }
            if count == 0 { break }
            bytes += buffer[0..<count]
            if count == buffer.count && buffer.count < 65536 { buffer = [UInt8](repeating: 0, count: 65536) }
        }
        return bytes
    }

    /// Writes `value` in one `write` call, as cgroup files require.
    static func write(_ path: String, _ value: String) throws(SandboxError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC)
        guard fd >= 0 else { throw SandboxError.system("cannot open \(path)", errno) }
        defer { close(fd) }
        let count = value.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        guard count == value.utf8.count else {
            throw SandboxError.system("cannot write '\(value)' to \(path)", errno)
        }
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// `mkdir -p`, mode 0755. Tries the whole path first: it usually exists, or only its
    /// last component is missing.
    static func makeDirectories(_ path: String) throws(SandboxError) {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        guard errno == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex else {
            throw SandboxError.system("cannot create \(path)", errno)
        }
        try makeDirectories(String(path[..<slash]))
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw SandboxError.system("cannot create \(path)", errno)
        }
    }

    static func removeDirectory(_ path: String) throws(SandboxError) {
        guard rmdir(path) == 0 || errno == ENOENT else {
            throw SandboxError.system("cannot remove \(path)", errno)
        }
    }

    /// Reads `key value` lines (cpu.stat, memory.events, memory.oom_control).
    static func keyedValues(_ path: String) throws(SandboxError) -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in try read(path).split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = UInt64(parts[1]) { values[String(parts[0])] = value }
        }
        return values
    }

    static func number(_ path: String) throws(SandboxError) -> UInt64 {
        let text = try read(path).trimmingWhitespace()
        guard let value = UInt64(text) else {
            throw SandboxError(.cgroup, "\(path) holds '\(text)', not a number")
        }
        return value
    }

    /// The pids listed in a `cgroup.procs` file.
    static func pids(_ path: String) throws(SandboxError) -> [Int32] {
        try read(path).split(separator: "\n").compactMap { Int32($0) }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}

/// `strerror` as a Swift string, e.g. "EPERM (Operation not permitted)".
func errnoDescription(_ code: Int32) -> String {
    let name = errnoNames[code] ?? "errno \(code)"
    return "\(name) (\(String(cString: strerror(code))))"
}

private let errnoNames: [Int32: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", E2BIG: "E2BIG",
    ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES",
    EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL",
    ENFILE: "ENFILE", EMFILE: "EMFILE", EFBIG: "EFBIG", ENOSPC: "ENOSPC", EROFS: "EROFS", ENOSYS: "ENOSYS",
    ENOTEMPTY: "ENOTEMPTY", EOPNOTSUPP: "EOPNOTSUPP", EAFNOSUPPORT: "EAFNOSUPPORT", ECONNREFUSED: "ECONNREFUSED",
]
