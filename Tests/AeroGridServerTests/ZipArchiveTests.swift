import CLibZ
import Foundation
import Testing

@testable import AeroGridServer

/// The bundle's zip reader against archives a hostile tenant could upload: it answers
/// entries or a refusal, and never traps (a trap would end this test process, and in the
/// server every tenant's apps with it).
@Suite struct ZipArchiveTests {
    /// 98 bytes: a ZIP64 end record whose central directory "starts" near 2^63. The reader
    /// before this one converted that offset to Int and added 46 to it: the process died.
    @Test func aZip64EndRecordPointingNear2To63IsRefused() throws {
        var zip = ZipWriter.zip64EndRecord(entries: 1, directorySize: 46, directoryOffset: (1 << 63) - 10, at: 0)
        zip += ZipWriter.zip64Locator(recordOffset: 0)
        zip += ZipWriter.endRecord(entries: 0xFFFF, directorySize: 0xFFFF_FFFF, directoryOffset: 0xFFFF_FFFF)
        #expect(zip.count == 98)
        let refusal = #expect(throws: BundleRefused.self) { try ZipArchive(zip, maxEntries: 1000) }
        #expect(refusal?.message.contains("damaged") == true)
        // The locator itself pointing past the end: refused the same way.
        var far = ZipWriter.zip64EndRecord(entries: 1, directorySize: 46, directoryOffset: 0, at: 0)
        far += ZipWriter.zip64Locator(recordOffset: UInt64.max - 3)
        far += ZipWriter.endRecord(entries: 0xFFFF, directorySize: 0xFFFF_FFFF, directoryOffset: 0xFFFF_FFFF)
        #expect(throws: BundleRefused.self) { try ZipArchive(far, maxEntries: 1000) }
    }

    @Test func entriesSizesAndLocalOffsetsFromTheZip64ExtraFieldAreChecked() throws {
        // A valid archive whose entry keeps its sizes and offset in the ZIP64 extra field.
        let valid = ZipWriter.archive([.file("app.toml", Array("name = \"x\"\n".utf8))], zip64Entries: true)
        let archive = try ZipArchive(valid, maxEntries: 10)
        #expect(archive.entries.map(\.name) == ["app.toml"])
        #expect(try content(of: archive.entries[0], in: archive) == Array("name = \"x\"\n".utf8))
        // The same with the extra field's local-header offset set near 2^64.
        var bad = valid
        let extra = try #require(ZipWriter.find([0x01, 0x00, 24, 0x00], in: bad))
        ZipWriter.put64(&bad, at: extra + 4 + 16, UInt64.max - 20)
        #expect(throws: BundleRefused.self) { try ZipArchive(bad, maxEntries: 10) }
    }

    @Test func validArchivesReadBackExactly() throws {
        let files: [ZipWriter.Item] = [
            .directory("pkg/"), .file("app.toml", Array("name = \"demo\"\n".utf8)),
            .file("pkg/big.py", Array(String(repeating: "x = 1\n", count: 4000).utf8), deflate: true),
            .file("pkg/empty.txt", [], deflate: true), .file("crème.txt", Array("é".utf8)),
        ]
        for zip64 in [false, true] {
            let archive = try ZipArchive(ZipWriter.archive(files, zip64Entries: zip64, zip64End: zip64), maxEntries: 10)
            #expect(archive.entries.map(\.name) == files.map(\.name))
            for (entry, item) in zip(archive.entries, files) {
                #expect(try content(of: entry, in: archive) == item.content)
            }
        }
    }

    @Test func aTruncatedDeflateStreamIsRefusedNotLooped() throws {
        var zip = ZipWriter.archive([.file("a.py", Array(String(repeating: "abc", count: 10_000).utf8), deflate: true)])
        let archive = try ZipArchive(zip, maxEntries: 10)
        // Cut the compressed data short while keeping every header where it was: the stream
        // ends early (zeros where deflate data was).
        let entry = archive.entries[0]
        for index in (entry.dataOffset + entry.compressedSize / 2)..<(entry.dataOffset + entry.compressedSize) { zip[index] = 0 }
        let damaged = try ZipArchive(zip, maxEntries: 10)
        #expect(throws: BundleRefused.self) { _ = try content(of: damaged.entries[0], in: damaged) }
    }

    /// Thousands of archives made from valid ones by changing bytes, fields (with values
    /// chosen to overflow: 0xFFFF…, 2^63, the length), cutting and splicing, with the ZIP64
    /// structures among the targets. Each must give entries whose data lies inside the
    /// archive, or a refusal. Seeded: a failure names its case and can be replayed.
    @Test func fuzzedArchivesGiveEntriesOrARefusalNeverATrap() throws {
        let corpus = ZipWriter.corpus()
        var random = SplitMix64(seed: 0xAE20_641D)
        var accepted = 0
        var refused = 0
        var extracted = 0
        let cases = 12_000
        for number in 0..<cases {
            var zip = corpus[Int(random.next() % UInt64(corpus.count))]
            let mutations = 1 + Int(random.next() % 4)
            for _ in 0..<mutations { ZipWriter.mutate(&zip, &random) }
            do {
                let archive = try ZipArchive(zip, maxEntries: 1000)
                accepted += 1
                for entry in archive.entries {
                    #expect(
                        entry.dataOffset >= 0 && entry.compressedSize >= 0 && entry.dataOffset + entry.compressedSize <= zip.count,
                        "case \(number): entry \(entry.name) lies outside the archive")
                    // As the bundle store does: stop past 100× or 1 MiB, and 8 MiB in all.
                    var written = 0
                    let allowed = max(entry.compressedSize * 100, 1 << 20)
                    do {
                        try archive.extract(entry) { (chunk: UnsafeRawBufferPointer) throws(BundleRefused) in
                            written += chunk.count
                            if written > allowed || written > 8 << 20 { throw BundleRefused("too large") }
                        }
                        extracted += 1
                    } catch {}
                }
            } catch {
                refused += 1
            }
        }
        print("zip fuzz: \(cases) archives, \(accepted) read (\(extracted) entries unpacked), \(refused) refused")
        // Not vacuous: mutations that leave the structure valid are read and unpacked, and
        // most are refused.
        #expect(refused > cases / 2, "only \(refused) of \(cases) mutated archives were refused")
        #expect(accepted > cases / 50, "only \(accepted) of \(cases) mutated archives were readable")
        #expect(refused > cases / 2, "only \(refused) of \(cases) mutated archives were refused")
        #expect(extracted > cases / 50)
    }

    private func content(of entry: ZipArchive.Entry, in archive: ZipArchive) throws -> [UInt8] {
        var bytes: [UInt8] = []
        try archive.extract(entry) { (chunk: UnsafeRawBufferPointer) throws(BundleRefused) in bytes += chunk }
        return bytes
    }
}

/// Reproducible pseudo-random numbers (SplitMix64).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Writes small zip archives for the tests: stored or deflated entries, Unix modes, and
/// optionally the ZIP64 forms (sizes and offsets in the extra field, the ZIP64 end record).
enum ZipWriter {
    struct Item {
        let name: String
        let content: [UInt8]
        let deflate: Bool
        let mode: UInt32

        static func file(_ name: String, _ content: [UInt8], deflate: Bool = false, mode: UInt32 = 0o100644) -> Item {
            Item(name: name, content: content, deflate: deflate, mode: mode)
        }
        static func directory(_ name: String) -> Item { Item(name: name, content: [], deflate: false, mode: 0o040755) }
    }

    static func archive(_ items: [Item], zip64Entries: Bool = false, zip64End: Bool = false, comment: [UInt8] = []) -> [UInt8] {
        var zip: [UInt8] = []
        var directory: [UInt8] = []
        for item in items {
            let data = item.deflate ? deflated(item.content) : item.content
            let crc = UInt32(crc32(0, item.content, uInt(item.content.count)))
            let name = Array(item.name.utf8)
            let offset = UInt64(zip.count)
            // Local header.
            zip += le32(0x0403_4b50) + le16(20) + le16(0x0800) + le16(item.deflate ? 8 : 0) + le16(0) + le16(0)
            zip += le32(crc) + le32(UInt32(data.count)) + le32(UInt32(item.content.count)) + le16(UInt16(name.count)) + le16(0)
            zip += name + data
            // Central directory entry.
            var extra: [UInt8] = []
            if zip64Entries {
                extra = le16(0x0001) + le16(24) + le64(UInt64(item.content.count)) + le64(UInt64(data.count)) + le64(offset)
            }
            let big: UInt32 = 0xFFFF_FFFF
            directory += le32(0x0201_4b50) + le16(3 << 8 | 45) + le16(45) + le16(0x0800) + le16(item.deflate ? 8 : 0) + le16(0) + le16(0)
            directory += le32(crc) + le32(zip64Entries ? big : UInt32(data.count)) + le32(zip64Entries ? big : UInt32(item.content.count))
            directory += le16(UInt16(name.count)) + le16(UInt16(extra.count)) + le16(0) + le16(0) + le16(0) + le32(item.mode << 16)
            directory += le32(zip64Entries ? big : UInt32(offset)) + name + extra
        }
        let directoryOffset = zip.count
        zip += directory
        if zip64End {
            let record = UInt64(zip.count)
            zip += zip64EndRecord(entries: UInt64(items.count), directorySize: UInt64(directory.count), directoryOffset: UInt64(directoryOffset), at: record)
            zip += zip64Locator(recordOffset: record)
            zip += endRecord(entries: 0xFFFF, directorySize: 0xFFFF_FFFF, directoryOffset: 0xFFFF_FFFF, comment: comment)
        } else {
            zip += endRecord(entries: UInt16(items.count), directorySize: UInt32(directory.count), directoryOffset: UInt32(directoryOffset), comment: comment)
        }
        return zip
    }

    static func endRecord(entries: UInt16, directorySize: UInt32, directoryOffset: UInt32, comment: [UInt8] = []) -> [UInt8] {
        le32(0x0605_4b50) + le16(0) + le16(0) + le16(entries) + le16(entries) + le32(directorySize) + le32(directoryOffset)
            + le16(UInt16(comment.count)) + comment
    }

    static func zip64EndRecord(entries: UInt64, directorySize: UInt64, directoryOffset: UInt64, at: UInt64) -> [UInt8] {
        le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0) + le64(entries) + le64(entries)
            + le64(directorySize) + le64(directoryOffset)
    }

    static func zip64Locator(recordOffset: UInt64) -> [UInt8] {
        le32(0x0706_4b50) + le32(0) + le64(recordOffset) + le32(1)
    }

    /// Valid archives of several shapes to mutate.
    static func corpus() -> [[UInt8]] {
        let text = Array(String(repeating: "print('hello')\n", count: 200).utf8)
        let manifest = Array("name = \"demo\"\nentrypoint = \"app.py\"\n".utf8)
        return [
            archive([.file("app.toml", manifest), .file("app.py", text)]),
            archive([.file("app.toml", manifest), .file("app.py", text, deflate: true)]),
            archive([.directory("lib/"), .file("lib/a.py", text, deflate: true), .file("app.toml", manifest, deflate: true)], zip64Entries: true),
            archive([.file("app.toml", manifest), .file("data.bin", Array(repeating: 0, count: 5000), deflate: true)], zip64End: true),
            archive([.file("app.toml", manifest, deflate: true), .file("x", [1, 2, 3])], zip64Entries: true, zip64End: true),
            archive([.file("app.toml", manifest)], comment: Array("a comment\u{0}PK\u{5}\u{6}".utf8)),
            archive([]),
        ]
    }

    /// One random change: a byte, a little-endian field set to a value picked to overflow
    /// (or to a nearby length), a cut, a splice, or a region repeated.
    static func mutate(_ zip: inout [UInt8], _ random: inout SplitMix64) {
        guard !zip.isEmpty else {
            zip = [0x50, 0x4b]
            return
        }
        let at = Int(random.next() % UInt64(zip.count))
        let count = UInt64(zip.count)
        let interesting: [UInt64] = [
            0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFF_FFFF, 0x7FFF_FFFF, 1 << 31, 1 << 32, 1 << 63, (1 << 63) - 1,
            (1 << 63) - 46, UInt64.max, UInt64.max - 45, count, count &- 1, count &- 22, count &+ 1,
            count &- 46, count &- 56, count &- 76, random.next(),
        ]
        switch random.next() % 9 {
        case 0: zip[at] = UInt8(truncatingIfNeeded: random.next())
        case 1: zip[at] ^= 1 << UInt8(random.next() % 8)
        case 2:
            if zip.count >= 2 {
                put16(&zip, at: min(at, zip.count - 2), UInt16(truncatingIfNeeded: interesting[Int(random.next() % UInt64(interesting.count))]))
            }
        case 3:
            if zip.count >= 4 {
                put32(&zip, at: min(at, zip.count - 4), UInt32(truncatingIfNeeded: interesting[Int(random.next() % UInt64(interesting.count))]))
            }
        case 4:
            if zip.count >= 8 { put64(&zip, at: min(at, zip.count - 8), interesting[Int(random.next() % UInt64(interesting.count))]) }
        case 5: zip.removeSubrange(at..<zip.count)  // truncated
        case 6: zip.removeSubrange(0..<at)  // a prefix lost: every offset now wrong
        case 7:
            let length = min(Int(random.next() % 64), zip.count - at)
            zip.insert(contentsOf: zip[at..<(at + length)], at: Int(random.next() % count))
        default:
            // A field of a ZIP64 structure, where there is one.
            for signature: [UInt8] in [[0x50, 0x4b, 0x06, 0x06], [0x50, 0x4b, 0x06, 0x07], [0x01, 0x00, 24, 0x00]] {
                if let found = find(signature, in: zip) {
                    let field = found + 4 + Int(random.next() % 48)
                    if field + 8 <= zip.count { put64(&zip, at: field, interesting[Int(random.next() % UInt64(interesting.count))]) }
                    return
                }
            }
            zip[at] = UInt8(truncatingIfNeeded: random.next())
        }
    }

    static func find(_ pattern: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count >= pattern.count else { return nil }
        for index in 0...(bytes.count - pattern.count) where Array(bytes[index..<(index + pattern.count)]) == pattern { return index }
        return nil
    }

    static func put16(_ bytes: inout [UInt8], at: Int, _ value: UInt16) { bytes.replaceSubrange(at..<(at + 2), with: le16(value)) }
    static func put32(_ bytes: inout [UInt8], at: Int, _ value: UInt32) { bytes.replaceSubrange(at..<(at + 4), with: le32(value)) }
    static func put64(_ bytes: inout [UInt8], at: Int, _ value: UInt64) { bytes.replaceSubrange(at..<(at + 8), with: le64(value)) }

    static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
    static func le32(_ value: UInt32) -> [UInt8] { le16(UInt16(value & 0xFFFF)) + le16(UInt16(value >> 16)) }
    static func le64(_ value: UInt64) -> [UInt8] { le32(UInt32(value & 0xFFFF_FFFF)) + le32(UInt32(value >> 32)) }

    /// Raw deflate, as zip stores it.
    static func deflated(_ input: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        precondition(
            deflateInit2_(
                &stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                Int32(MemoryLayout<z_stream>.size)) == Z_OK)
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 16)
        var input = input
        let produced = input.withUnsafeMutableBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = source.baseAddress
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                precondition(deflate(&stream, Z_FINISH) == Z_STREAM_END)
                return target.count - Int(stream.avail_out)
            }
        }
        return Array(output[0..<produced])
    }
}
