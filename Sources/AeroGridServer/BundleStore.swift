import AeroGridCore
public import AeroGridStore
import Crypto
public import Foundation
import Synchronization

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

/// A bundle on disk: unpacked read-only under its tenant and its digest.
public struct StoredBundle: Sendable {
    public let tenantID: String
    public let digest: String
    public let directory: String
    public let manifest: BundleManifest

    /// How the store and the clean-up name it: `<tenant id>/<digest>`.
    public var key: String { "\(tenantID)/\(digest)" }
}

/// Whose a bundle is: the tenant, and the host uid its apps run as, the only one besides
/// the supervisor that may read it.
public struct BundleOwner: Sendable {
    public let tenantID: String
    public let uid: UInt32

    public init(tenantID: String, uid: UInt32) {
        self.tenantID = tenantID
        self.uid = uid
    }
}

/// Keeps uploaded bundles under `<data dir>/bundles/<tenant id>/<sha256 of the zip>/`,
/// owned by root and the tenant's group (its apps' host uid), readable by nobody else: one
/// tenant's code is not another's to read. A bundle is checked entry by entry (names, types,
/// sizes counted as they are inflated) into a private directory that becomes its final one
/// only when everything passed: a refused upload leaves nothing behind.
public final class BundleStore: Sendable {
    public let directory: String
    public let limits: BundleLimits
    /// Bundles (by key) stored by a deploy that has not yet recorded them: never cleaned up.
    private let reserved = Mutex(Reservations())

    struct Reservations {
        /// Deploys holding each bundle.
        var counts: [String: Int] = [:]
        /// Clean-ups running, and every bundle reserved while one ran: such a bundle may
        /// have been recorded after the clean-up read what is in use, so it is kept.
        var cleanups = 0
        var reservedDuringCleanup: Set<String> = []
    }

    /// Whether each bundle's zip is kept too (`.archives/<tenant id>-<digest>.zip`, the
    /// owner's only): a node of a cluster serves it to peers that need the bundle.
    public let keepsArchives: Bool

    public init(directory: String, limits: BundleLimits = BundleLimits(), keepsArchives: Bool = false) throws {
        self.directory = directory
        self.limits = limits
        self.keepsArchives = keepsArchives
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Passed through by the apps' uids (to their own tenant's directory), listed by none.
        chmod(directory, 0o711)
        // Left by a server that died mid-upload.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".incoming-") {
            removeTree("\(directory)/\(name)")
        }
    }

    public func path(tenantID: String, digest: String) -> String { "\(directory)/\(tenantID)/\(digest)" }

    /// Where the bundle's zip is kept (with `keepsArchives`).
    public func archivePath(tenantID: String, digest: String) -> String { "\(directory)/.archives/\(tenantID)-\(digest).zip" }

    private func keepArchive(_ zip: Data, tenantID: String, digest: String) {
        guard keepsArchives else { return }
        let path = archivePath(tenantID: tenantID, digest: digest)
        guard !FileManager.default.fileExists(atPath: path) else { return }
        try? FileManager.default.createDirectory(atPath: "\(directory)/.archives", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let incoming = "\(directory)/.archives/.incoming-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: incoming, contents: zip, attributes: [.posixPermissions: 0o600]) else { return }
        if rename(incoming, path) != 0 { unlink(incoming) }
    }

    /// Checks, unpacks and keeps `zip` for its owner; the same bytes uploaded twice by one
    /// tenant are kept once.
    public func store(_ zip: Data, owner: BundleOwner) throws(BundleRefused) -> StoredBundle {
        guard zip.count <= limits.maxUploadBytes else {
            throw BundleRefused("the bundle is \(zip.count) bytes; the limit is \(limits.maxUploadBytes) (\(limits.maxUploadBytes >> 20) MiB)", tooLarge: true)
        }
        let digest = SHA256.hash(data: zip).map { String(format: "%02x", $0) }.joined()
        let key = "\(owner.tenantID)/\(digest)"
        reserved.withLock { table in
            table.counts[key, default: 0] += 1
            if table.cleanups > 0 { table.reservedDuringCleanup.insert(key) }
        }
        do throws(BundleRefused) {
            let stored = try store(zip, digest: digest, owner: owner)
            keepArchive(zip, tenantID: owner.tenantID, digest: digest)
            return stored
        } catch {
            release(key)
            throw error
        }
    }

    /// Ends the reservation `store` made: the bundle may be cleaned up once no app uses it.
    public func release(_ bundle: StoredBundle) { release(bundle.key) }

    private func release(_ key: String) {
        reserved.withLock { table in
            table.counts[key, default: 1] -= 1
            if table.counts[key] == 0 { table.counts[key] = nil }
        }
    }

    private func store(_ zip: Data, digest: String, owner: BundleOwner) throws(BundleRefused) -> StoredBundle {
        let tenantDirectory = "\(directory)/\(owner.tenantID)"
        let final = path(tenantID: owner.tenantID, digest: digest)
        if FileManager.default.fileExists(atPath: final) {
            do {
                return StoredBundle(tenantID: owner.tenantID, digest: digest, directory: final, manifest: try BundleManifest.load(directory: final))
            } catch {
                removeTree(final)  // damaged: unpack it again
            }
        }
        let archive = try ZipArchive([UInt8](zip), maxEntries: limits.maxEntries)
        for entry in archive.entries { try check(entry) }
        guard archive.entries.contains(where: { $0.name == "app.toml" }) else {
            throw BundleRefused("the bundle has no app.toml at its root (zip the app's directory contents, not the directory)")
        }
        let incoming = "\(directory)/.incoming-\(UUID().uuidString)"
        do throws(BundleRefused) {
            try unpack(archive, into: incoming)
            let manifest: BundleManifest
            do throws(AeroGridError) {
                manifest = try BundleManifest.load(directory: incoming)
            } catch {
                throw BundleRefused(error.message.replacingOccurrences(of: incoming + "/", with: ""))
            }
            makeReadOnly(incoming, group: owner.uid)
            // Made only now, so a refused upload leaves no directory behind.
            guard makeTenantDirectory(tenantDirectory, owner: owner) else {
                throw BundleRefused("the bundle could not be stored: \(String(cString: strerror(errno)))")
            }
            if rename(incoming, final) != 0 {
                // Another upload of the same bytes won the race: keep theirs.
                guard FileManager.default.fileExists(atPath: final) else {
                    throw BundleRefused("the bundle could not be stored: \(String(cString: strerror(errno)))")
                }
                removeTree(incoming)
            }
            return StoredBundle(tenantID: owner.tenantID, digest: digest, directory: final, manifest: manifest)
        } catch {
            removeTree(incoming)
            throw error
        }
    }

    /// `bundles/<tenant id>`: root's, the tenant's group may enter it, nobody else.
    private func makeTenantDirectory(_ path: String, owner: BundleOwner) -> Bool {
        if mkdir(path, 0o750) != 0 && errno != EEXIST { return false }
        return chown(path, 0, owner.uid) == 0 && chmod(path, 0o750) == 0
    }

    /// Removes bundles no app uses any more (`inUse` reads their keys, `<tenant id>/<digest>`),
    /// and the directories of tenants left with none. The reservations are looked at before
    /// `inUse` is read: a deploy that released its bundle before then had recorded its app
    /// before then, so `inUse` has it; one reserving after then is kept by this clean-up.
    public func removeUnused(inUse: () async throws -> Set<String>) async rethrows {
        let busy = reserved.withLock { table in
            table.cleanups += 1
            return Set(table.counts.keys)
        }
        defer {
            reserved.withLock { table in
                table.cleanups -= 1
                if table.cleanups == 0 { table.reservedDuringCleanup = [] }
            }
        }
        let used = try await inUse()
        for tenant in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where !tenant.hasPrefix(".") {
            let tenantDirectory = "\(directory)/\(tenant)"
            for digest in (try? FileManager.default.contentsOfDirectory(atPath: tenantDirectory)) ?? [] {
                let key = "\(tenant)/\(digest)"
                guard !used.contains(key), !busy.contains(key) else { continue }
                // Under the lock: a deploy of these bytes reserves first, then finds the
                // directory gone and unpacks it again.
                reserved.withLock { table in
                    guard table.counts[key] == nil, !table.reservedDuringCleanup.contains(key) else { return }
                    removeTree("\(tenantDirectory)/\(digest)")
                    unlink(archivePath(tenantID: tenant, digest: digest))
                }
            }
            // Empty now: gone (rmdir refuses a directory that is not). Decided under the
            // reservations' lock: a deploy reserves before it makes the directory, so it
            // either stops the removal here or makes the directory again after it.
            reserved.withLock { table in
                if !table.counts.keys.contains(where: { $0.hasPrefix(tenant + "/") }) { rmdir(tenantDirectory) }
            }
        }
    }

    /// Bundles kept under their digest alone (as before each tenant had its own) move to
    /// their tenants' directories, with their ownership; each tenant that uses one gets its
    /// own copy.
    public func adoptSharedBundles(store: Store) async throws {
        let shared = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.count == 64 && $0.allSatisfy(\.isHexDigit) }
        guard !shared.isEmpty else { return }
        var tenants: [String: TenantRecord] = [:]
        for tenant in try await store.tenants() { tenants[tenant.name] = tenant }
        for app in try await store.apps() where shared.contains(app.bundleDigest) {
            guard let tenant = tenants[app.tenant], let uid = tenant.hostUID else { continue }
            let target = path(tenantID: tenant.id, digest: app.bundleDigest)
            guard !FileManager.default.fileExists(atPath: target),
                makeTenantDirectory("\(directory)/\(tenant.id)", owner: BundleOwner(tenantID: tenant.id, uid: uid))
            else { continue }
            let incoming = "\(directory)/.incoming-\(UUID().uuidString)"
            do {
                try FileManager.default.copyItem(atPath: "\(directory)/\(app.bundleDigest)", toPath: incoming)
                chmod(incoming, 0o700)
                makeReadOnly(incoming, group: uid)
                rename(incoming, target)
            } catch {
                removeTree(incoming)
            }
        }
        for digest in shared { removeTree("\(directory)/\(digest)") }
    }

    private func check(_ entry: ZipArchive.Entry) throws(BundleRefused) {
        let name = entry.name
        let shown = "entry '\(name.cut(toBytes: 200))'"
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
        case .special(let mode):
            throw BundleRefused("\(shown) is a special file (mode \(String(mode, radix: 8))); bundles may hold only regular files and directories")
        }
    }

    private func unpack(_ archive: ZipArchive, into root: String) throws(BundleRefused) {
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        } catch {
            throw BundleRefused("the bundle could not be stored: \(error.localizedDescription)")
        }
        var expanded = 0
        for entry in archive.entries {
            let name = entry.name
            let target = root + "/" + name
            if entry.kind == .directory || name.hasSuffix("/") {
                try makeDirectory(target, for: name)
                continue
            }
            try makeDirectory((target as NSString).deletingLastPathComponent, for: name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) {
                throw BundleRefused(
                    "entry '\(name.cut(toBytes: 200))' appears twice in the bundle\(isDirectory.boolValue ? " (as a directory and as a file)" : "")")
            }
            let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw BundleRefused("entry '\(name.cut(toBytes: 200))' could not be written") }
            defer { close(fd) }
            // Counted as it is inflated: the sizes the archive states are not trusted.
            let allowed = max(entry.compressedSize.multipliedReportingOverflow(by: limits.maxRatio).partialValue, 1 << 20)
            var written = 0
            try archive.extract(entry) { (chunk: UnsafeRawBufferPointer) throws(BundleRefused) in
                written += chunk.count
                expanded += chunk.count
                if written > allowed {
                    throw BundleRefused(
                        "entry '\(name.cut(toBytes: 200))' expands more than \(limits.maxRatio) times its compressed size (\(entry.compressedSize) bytes): refused as a zip bomb"
                    )
                }
                if expanded > limits.maxExpandedBytes {
                    throw BundleRefused("the bundle expands beyond \(limits.maxExpandedBytes >> 20) MiB; the limit is \(limits.maxExpandedBytes) bytes in all")
                }
                var offset = 0
                while offset < chunk.count {
                    let count = write(fd, chunk.baseAddress! + offset, chunk.count - offset)
                    if count < 0 && errno == EINTR { continue }
                    guard count > 0 else { throw BundleRefused("entry '\(name.cut(toBytes: 200))' could not be written") }
                    offset += count
                }
            }
        }
    }

    /// Makes `path` for entry `name`; the refusal names the entry, never the server's paths.
    private func makeDirectory(_ path: String, for name: String) throws(BundleRefused) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw BundleRefused("entry '\(name.cut(toBytes: 200))' is inside a path that is also a file in the bundle")
            }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw BundleRefused("entry '\(name.cut(toBytes: 200))' could not be unpacked (a file and a directory of the same name, or a path too long)")
        }
    }

    /// Root's and the tenant's group's: files 0440 and directories 0550. The sandbox (the
    /// tenant's uid and gid) reads them, nobody writes, and no other uid reads them.
    private func makeReadOnly(_ root: String, group: UInt32) {
        let enumerator = FileManager.default.enumerator(atPath: root)
        var directories = [root]
        while let relative = enumerator?.nextObject() as? String {
            let path = root + "/" + relative
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            lchown(path, 0, group)
            if isDirectory.boolValue { directories.append(path) } else { chmod(path, 0o440) }
        }
        lchown(root, 0, group)
        // Deepest first, so no directory loses its write bit before its contents are done.
        for path in directories.reversed() { chmod(path, 0o550) }
    }

    private func removeTree(_ path: String) {
        // Read-only directories must be writable again before their contents can go.
        chmod(path, 0o700)
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let relative = enumerator?.nextObject() as? String { chmod(path + "/" + relative, 0o700) }
        try? FileManager.default.removeItem(atPath: path)
    }
}
