import AeroGridSandbox
import Foundation
import Testing

/// The compiled-filter cache is an accelerator the sandbox trusts with its seccomp filter: a
/// file in it that someone else could have written must never be loaded.
@Suite struct CompiledProfileCacheTests {
    private let profile = "\(repositoryRoot)/sandbox-profiles/python.json"

    /// A cache directory with one entry, whose program is replaced by 8 bytes of our own: a
    /// load that returns them read the cache.
    private func planted() throws -> (directory: String, file: String, real: [UInt8]) {
        let directory = "/tmp/aerogrid-filter-cache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let real = try CompiledProfile.load(path: profile, cacheDirectory: directory).filter.program
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".bpf") }
        try #require(files.count == 1, "the first load writes its entry")
        let file = "\(directory)/\(files[0])"
        let text = try Data(contentsOf: URL(fileURLWithPath: file))
        let header = text.prefix(through: text.firstIndex(of: UInt8(ascii: "\n"))!)
        try (header + Data([0x06, 0, 0, 0, 0, 0, 0xff, 0x7f])).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o644)
        return (directory, file, real)
    }

    @Test func anEntryOfOursIsUsed() throws {
        let (directory, _, real) = try planted()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let loaded = try CompiledProfile.load(path: profile, cacheDirectory: directory).filter.program
        #expect(loaded == [0x06, 0, 0, 0, 0, 0, 0xff, 0x7f] && loaded != real, "the cache is read when it is trusted")
    }

    @Test(arguments: ["file writable by others", "directory writable by others", "file owned by another user"])
    func anEntryOthersCouldHaveWrittenIsNotUsed(_ case: String) throws {
        let (directory, file, real) = try planted()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        switch `case` {
        case "file writable by others": chmod(file, 0o666)
        case "directory writable by others": chmod(directory, 0o777)
        default: chown(file, 65534, 65534)
        }
        let loaded = try CompiledProfile.load(path: profile, cacheDirectory: directory).filter.program
        #expect(loaded == real, "\(`case`): the planted filter was loaded")
    }
}
