import CSandboxSys
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A command found on the host, with the host paths it needs inside the sandbox.
struct HostCommand: Sendable {
    /// The executable's real path (shims and symlinks followed).
    let executable: String
    /// Directories to mount read-only so it can run (besides /usr, /lib…).
    let requiredPaths: [String]

    /// Finds `name` through PATH. A shim (a script in front of the real program, as pyenv
    /// has) is asked for the interpreter it stands for: for Python, `sys.executable` and
    /// `sys.base_prefix` name the real binary and the prefix its standard library is in.
    static func resolve(_ name: String, path: String) throws(SandboxError) -> HostCommand {
        if let known = cache.withLock({ $0[name] }) { return known }
        let resolved = try resolveUncached(name, path: path)
        cache.withLock { $0[name] = resolved }
        return resolved
    }

    /// Resolving a shim runs the interpreter once (tens of milliseconds): remember it.
    private static let cache = Mutex<[String: HostCommand]>([:])

    private static func resolveUncached(_ name: String, path: String) throws(SandboxError) -> HostCommand {
        let found = try locate(name, path: path)
        let real = realPath(found) ?? found
        if isScript(real) && isPython(name) {
            return try python(found)
        }
        if isPython(real) {
            // A real interpreter binary lives in PREFIX/bin; its library is under PREFIX.
            let prefix = parent(parent(real))
            let system = ["/usr", "/usr/local", "/"]
            return HostCommand(executable: real, requiredPaths: system.contains(prefix) ? [] : [prefix])
        }
        let directory = parent(real)
        let system = ["/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/"]
        return HostCommand(executable: real, requiredPaths: system.contains { real.hasPrefix($0) } ? [] : [directory])
    }

    private static func python(_ interpreter: String) throws(SandboxError) -> HostCommand {
        let output = try capture([interpreter, "-I", "-S", "-c", "import sys; print(sys.executable); print(sys.base_prefix)"])
        let lines = output.split(separator: "\n").map(String.init)
        guard lines.count == 2 else {
            throw SandboxError(.launch, "cannot ask \(interpreter) where it lives: it printed '\(output)'")
        }
        let executable = realPath(lines[0]) ?? lines[0]
        let prefix = realPath(lines[1]) ?? lines[1]
        let system = ["/usr", "/usr/local"]
        return HostCommand(executable: executable, requiredPaths: system.contains(prefix) ? [] : [prefix])
    }

    private static func locate(_ name: String, path: String) throws(SandboxError) -> String {
        if name.contains("/") {
            guard access(name, X_OK) == 0 else { throw SandboxError(.launch, "cannot run \(name): \(errnoDescription(errno))") }
            return name
        }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw SandboxError(.launch, "cannot find \(name) in PATH (\(path))")
    }

    private static func isPython(_ path: String) -> Bool {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        return base.hasPrefix("python")
    }

    private static func isScript(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic: (UInt8, UInt8) = (0, 0)
        return read(fd, &magic, 2) == 2 && magic == (UInt8(ascii: "#"), UInt8(ascii: "!"))
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// Runs a command to completion and returns its standard output.
    static func capture(_ arguments: [String]) throws(SandboxError) -> String {
        var pipeFDs: [Int32] = [-1, -1]
        guard sbx_pipe2(&pipeFDs, O_CLOEXEC) == 0 else { throw SandboxError.system("cannot make a pipe", errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        // Not every descriptor of a busy supervisor is close-on-exec (a listening socket
        // was once seen held by such a child): the command gets stdin, the pipe and stderr.
        sbx_spawn_close_from(&actions, 3)
        let arena = CStrings()
        let argv = arena.array(arguments)
        var pid = pid_t()
        let result = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        close(pipeFDs[1])
        defer { close(pipeFDs[0]) }
        guard result == 0 else { throw SandboxError(.launch, "cannot run \(arguments[0]): \(errnoDescription(result))") }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if count > 0 { output += buffer[0..<count] } else if count == 0 || errno != EINTR { break }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw SandboxError(.launch, "\(arguments.joined(separator: " ")) failed (status \(status))") }
        return String(decoding: output, as: UTF8.self).trimmingWhitespace()
    }
}

/// C strings that live as long as this object: for argv, envp and mount tables handed to C.
final class CStrings {
    private var allocations: [UnsafeMutablePointer<CChar>] = []
    private var arrays: [UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>] = []

    func string(_ value: String) -> UnsafeMutablePointer<CChar> {
        let pointer = strdup(value)!
        allocations.append(pointer)
        return pointer
    }

    func optional(_ value: String?) -> UnsafeMutablePointer<CChar>? {
        value.map(string)
    }

    /// A NULL-terminated array of C strings.
    func array(_ values: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: values.count + 1)
        for (index, value) in values.enumerated() { array[index] = string(value) }
        array[values.count] = nil
        arrays.append(array)
        return array
    }

    deinit {
        allocations.forEach { free($0) }
        arrays.forEach { $0.deallocate() }
    }
}
