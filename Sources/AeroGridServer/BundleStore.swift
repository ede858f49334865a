import AeroGridCore
import Crypto
public import Foundation
import Synchronization
import ZIPFoundation

/// Why a bundle was refused, in words that say what to fix.
public struct BundleRefused: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// The upload itself is too large (413) rather than its content wrong (422).
    public let tooLarge: Bool

    init(_ message: String, tooLarge: Bool = false) {
        self.message = message
        self.tooLarge = tooLarge
    }

    public var description: String { message }
}

/// Limits on what a bundle may be; a zip bomb or a zip-slip entry never reaches the disk.
public struct BundleLimits: Sendable {
    public var maxUploadBytes = 16 << 20
    public var maxExpandedBytes = 64 << 20
    public var maxEntries = 1000
    /// How many times its compressed size an entry may expand to, beyond the first MiB
    /// (small files of one repeated byte legitimately compress very well).
    public var maxRatio = 100

    public init() {}
}

/// A bundle on disk: unpacked read-only under its digest.
public struct StoredBundle: Sendable {
    public let digest: String
    public let directory: String
    public let manifest: BundleManifest
}

/// Keeps uploaded bundles under `<data dir>/bundles/<sha256 of the zip>/`. A bundle is
/// checked entry by entry (names, types, sizes counted as they are inflated) into a
/// private directory that becomes its final one only when everything passed: a refused
/// upload leaves nothing behind.
public final class BundleStore: Sendable {
    public let directory: String
    public let limits: BundleLimits
    /// Digests stored by a deploy that has not yet recorded them: never cleaned up.
    private let reserved = Mutex<[String: Int]>([:])

    public init(directory: String, limits: BundleLimits = BundleLimits()) throws {
        self.directory = directory
        self.limits = limits
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        // Left by a server that died mid-upload.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".incoming-") {
            removeTree("\(directory)/\(name)")
        }
    }

    public func path(digest: String) -> String { "\(directory)/\(digest)" }

    /// Checks, unpacks and keeps `zip`; the same bytes uploaded twice are kept once.
    public func store(_ zip: Data) throws(BundleRefused) -> StoredBundle {
        guard zip.count <= limits.maxUploadBytes else {
            throw BundleRefused("the bundle is \(zip.count) bytes; the limit is \(limits.maxUploadBytes) (\(limits.maxUploadBytes >> 20) MiB)", tooLarge: true)
        }
        let digest = SHA256.hash(data: zip).map { String(format: "%02x", $0) }.joined()
        let final = path(digest: digest)
        reserved.withLock { $0[digest, default: 0] += 1 }
        do throws(BundleRefused) {
            return try store(zip, digest: digest, final: final)
        } catch {
            release(digest)
            throw error
        }
    }

    /// Ends the reservation `store` made: the bundle may be cleaned up once no app uses it.
    public func release(_ digest: String) {
        reserved.withLock { table in
            table[digest, default: 1] -= 1
            if table[digest] == 0 { table[digest] = nil }
        }
    }

    private func store(_ zip: Data, digest: String, final: String) throws(BundleRefused) -> StoredBundle {
        if FileManager.default.fileExists(atPath: final) {
            do {
                return StoredBundle(digest: digest, directory: final, manifest: try BundleManifest.load(directory: final))
            } catch {
                removeTree(final)  // damaged: unpack it again
            }
        }
        let entries = try ZipDirectory.entries(of: zip, maxEntries: limits.maxEntries)
        for entry in entries { try check(entry) }
        guard entries.contains(where: { $0.name == "app.toml" }) else {
            throw BundleRefused("the bundle has no app.toml at its root (zip the app's directory contents, not the directory)")
        }

        let incoming = "\(directory)/.incoming-\(UUID().uuidString)"
        do throws(BundleRefused) {
            try unpack(zip, entries: entries, into: incoming)
            let manifest: BundleManifest
            do throws(AeroGridError) {
                manifest = try BundleManifest.load(directory: incoming)
            } catch {
                throw BundleRefused(error.message.replacingOccurrences(of: incoming + "/", with: ""))
            }
            makeReadOnly(incoming)
            if rename(incoming, final) != 0 {
                // Another upload of the same bytes won the race: keep theirs.
                guard FileManager.default.fileExists(atPath: final) else {
                    throw BundleRefused("the bundle could not be stored: \(String(cString: strerror(errno)))")
                }
                removeTree(incoming)
            }
            return StoredBundle(digest: digest, directory: final, manifest: manifest)
        } catch {
            removeTree(incoming)
            throw error
        }
    }

    /// Removes bundles no app uses any more.
    public func removeUnused(keeping used: Set<String>) {
        let busy = reserved.withLock { Set($0.keys) }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where !name.hasPrefix(".") && !used.contains(name) && !busy.contains(name) {
            removeTree("\(directory)/\(name)")
        }
    }

    private func check(_ entry: ZipDirectory.Entry) throws(BundleRefused) {
        let name = entry.name
        let shown = "entry '\(name.prefix(200))'"
        guard !name.isEmpty else { throw BundleRefused("an entry has an empty name") }
        guard !name.hasPrefix("/"), !name.contains("\\"), !(name.count > 1 && name.dropFirst().first == ":") else {
            throw BundleRefused("\(shown) has an absolute path; entries must be relative to the bundle's root")
        }
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !components.contains("..") else {
            throw BundleRefused("\(shown) contains '..'; entries may not point outside the bundle")
        }
        guard name.utf8.count <= 1024, components.allSatisfy({ $0.utf8.count <= 255 }), components.count <= 32 else {
            throw BundleRefused("\(shown) has a path longer than allowed (1024 bytes, 255 per name, 32 levels)")
        }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw BundleRefused("\(shown) has a control character in its name")
        }
        switch entry.kind {
        case .file, .directory: break
        case .symlink: throw BundleRefused("\(shown) is a symlink; bundles may hold only regular files and directories")
        case .special(let mode): throw BundleRefused("\(shown) is a special file (mode \(String(mode, radix: 8))); bundles may hold only regular files and directories")
        }
    }

    private func unpack(_ zip: Data, entries: [ZipDirectory.Entry], into root: String) throws(BundleRefused) {
        let archive: Archive
        do {
            archive = try Archive(data: zip, accessMode: .read)
        } catch {
            throw BundleRefused("the upload is not a readable zip archive: \(error)")
        }
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        } catch {
            throw BundleRefused("the bundle could not be stored: \(error.localizedDescription)")
        }
        var expanded = 0
        for entry in archive {
            let name = entry.path
            guard let checked = entries.first(where: { $0.name == name }) else {
                throw BundleRefused("entry '\(name.prefix(200))' is not in the archive's central directory")
            }
            let target = root + "/" + name
            if checked.kind == .directory || name.hasSuffix("/") {
                try makeDirectory(target, for: name)
                continue
            }
            try makeDirectory((target as NSString).deletingLastPathComponent, for: name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) {
                throw BundleRefused("entry '\(name.prefix(200))' appears twice in the bundle\(isDirectory.boolValue ? " (as a directory and as a file)" : "")")
            }
            guard FileManager.default.createFile(atPath: target, contents: nil),
                  let handle = FileHandle(forWritingAtPath: target) else {
                throw BundleRefused("entry '\(name.prefix(200))' could not be written")
            }
            defer { try? handle.close() }
            let allowed = max(Int(clamping: entry.compressedSize).multipliedReportingOverflow(by: limits.maxRatio).partialValue, 1 << 20)
            var written = 0
            do {
                let checksum = try archive.extract(entry, skipCRC32: false) { data in
                    written += data.count
                    expanded += data.count
                    if written > allowed {
                        throw BundleRefused("entry '\(name.prefix(200))' expands more than \(limits.maxRatio) times its compressed size (\(entry.compressedSize) bytes): refused as a zip bomb")
                    }
                    if expanded > limits.maxExpandedBytes {
                        throw BundleRefused("the bundle expands beyond \(limits.maxExpandedBytes >> 20) MiB; the limit is \(limits.maxExpandedBytes) bytes in all")
                    }
                    try handle.write(contentsOf: data)
                }
                guard checksum == entry.checksum else {
                    throw BundleRefused("entry '\(name.prefix(200))' is damaged (its CRC-32 does not match its contents); zip the app again")
                }
            } catch let refused as BundleRefused {
                throw refused
            } catch {
                throw BundleRefused("entry '\(name.prefix(200))' could not be unpacked: \(error)")
            }
        }
    }

    /// Makes `path` for entry `name`; the refusal names the entry, never the server's paths.
    private func makeDirectory(_ path: String, for name: String) throws(BundleRefused) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw BundleRefused("entry '\(name.prefix(200))' is inside a path that is also a file in the bundle")
            }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw BundleRefused("entry '\(name.prefix(200))' could not be unpacked (a file and a directory of the same name, or a path too long)")
        }
    }

    /// Files 0444 and directories 0555: the sandbox (another uid) reads them, nobody writes.
    private func makeReadOnly(_ root: String) {
        let enumerator = FileManager.default.enumerator(atPath: root)
        var directories = [root]
        while let relative = enumerator?.nextObject() as? String {
            let path = root + "/" + relative
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            if isDirectory.boolValue { directories.append(path) } else { chmod(path, 0o444) }
        }
        // Deepest first, so no directory loses its write bit before its contents are done.
        for path in directories.reversed() { chmod(path, 0o555) }
    }

    private func removeTree(_ path: String) {
        // Read-only directories must be writable again before their contents can go.
        let enumerator = FileManager.default.enumerator(atPath: path)
        chmod(path, 0o755)
        while let relative = enumerator?.nextObject() as? String { chmod(path + "/" + relative, 0o755) }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The zip's central directory as written, read directly: ZIPFoundation shows a FIFO or a
/// device as a regular file, and the mode bits are what tell them apart.
enum ZipDirectory {
    struct Entry: Equatable {
        enum Kind: Equatable { case file, directory, symlink, special(UInt32) }
        let name: String
        let kind: Kind
    }

    static func entries(of zip: Data, maxEntries: Int) throws(BundleRefused) -> [Entry] {
        let bytes = [UInt8](zip)
        let notZip = BundleRefused("the upload is not a zip archive (no end-of-central-directory record); zip the app's directory")
        guard bytes.count >= 22 else { throw notZip }
        // The end record is in the last 64 KiB + 22 bytes (its comment is at most 64 KiB).
        var end = -1
        var position = bytes.count - 22
        while position >= max(0, bytes.count - 22 - 65_535) {
            if read32(bytes, position) == 0x0605_4b50 { end = position; break }
            position -= 1
        }
        guard end >= 0 else { throw notZip }
        var count = Int(read16(bytes, end + 10))
        var offset = Int(read32(bytes, end + 16))
        if count == 0xFFFF || offset == 0xFFFF_FFFF {
            // ZIP64: the locator sits just before the end record.
            guard end >= 20, read32(bytes, end - 20) == 0x0706_4b50 else { throw notZip }
            let record = Int(read64(bytes, end - 20 + 8))
            guard record >= 0, record + 56 <= bytes.count, read32(bytes, record) == 0x0606_4b50 else { throw notZip }
            count = Int(clamping: read64(bytes, record + 32))
            offset = Int(clamping: read64(bytes, record + 48))
        }
        guard count <= maxEntries else {
            throw BundleRefused("the bundle has \(count) entries; the limit is \(maxEntries)")
        }
        var entries: [Entry] = []
        var cursor = offset
        for _ in 0..<count {
            guard cursor >= 0, cursor + 46 <= bytes.count, read32(bytes, cursor) == 0x0201_4b50 else {
                throw BundleRefused("the zip's central directory is damaged; zip the app's directory again")
            }
            let madeBy = read16(bytes, cursor + 4) >> 8
            let flags = read16(bytes, cursor + 8)
            let nameLength = Int(read16(bytes, cursor + 28))
            let extraLength = Int(read16(bytes, cursor + 30))
            let commentLength = Int(read16(bytes, cursor + 32))
            let external = read32(bytes, cursor + 38)
            guard cursor + 46 + nameLength <= bytes.count else {
                throw BundleRefused("the zip's central directory is damaged; zip the app's directory again")
            }
            let nameBytes = bytes[(cursor + 46)..<(cursor + 46 + nameLength)]
            // Bit 11: UTF-8 names; otherwise code page 437, whose ASCII half is all we allow.
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard flags & 0x0800 != 0 || nameBytes.allSatisfy({ $0 < 0x80 }) else {
                throw BundleRefused("entry '\(name.prefix(200))' has a name that is neither ASCII nor marked UTF-8")
            }
            let mode = external >> 16
            let kind: Entry.Kind
            // 3 = Unix, 19 = macOS: the high 16 bits are st_mode. Others only know directories.
            if (madeBy == 3 || madeBy == 19) && mode & 0o170000 != 0 {
                switch mode & 0o170000 {
                case 0o100000: kind = .file
                case 0o040000: kind = .directory
                case 0o120000: kind = .symlink
                default: kind = .special(mode)
                }
            } else {
                kind = name.hasSuffix("/") || external & 0x10 != 0 ? .directory : .file
            }
            entries.append(Entry(name: name, kind: kind))
            cursor += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    private static func read16(_ bytes: [UInt8], _ at: Int) -> UInt16 {
        UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    private static func read32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(read16(bytes, at)) | UInt32(read16(bytes, at + 2)) << 16
    }

    private static func read64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        UInt64(read32(bytes, at)) | UInt64(read32(bytes, at + 4)) << 32
    }
}
