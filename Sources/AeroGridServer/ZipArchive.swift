import AeroGridCore
import CLibZ

/// A zip archive held in memory, read without trusting any number in it. Every offset,
/// size and count the archive states is compared with the archive's own length before it
/// is used (in unsigned space, so no arithmetic on it can overflow), and every entry's data
/// must lie inside the archive before its central directory. The reader never traps:
/// it returns entries or a `BundleRefused` that says what is wrong.
///
/// What it reads: the end record (and the ZIP64 end record when the end record points to
/// it), the central directory, each entry's local header, and stored or deflated data.
/// What it refuses: multi-part and encrypted archives, other compression methods.
struct ZipArchive {
    struct Entry: Equatable {
        enum Kind: Equatable {
            case file, directory, symlink
            case special(UInt32)
        }
        let name: String
        let kind: Kind
        /// 0 stored, 8 deflated.
        let method: UInt16
        let crc32: UInt32
        let compressedSize: Int
        /// As the central directory states it; extraction checks it.
        let uncompressedSize: Int
        /// Where the entry's (compressed) bytes begin in the archive.
        let dataOffset: Int
    }

    let bytes: [UInt8]
    let entries: [Entry]

    static let notZip = BundleRefused("the upload is not a zip archive (no end-of-central-directory record); zip the app's directory")
    static let damaged = BundleRefused("the zip's central directory is damaged; zip the app's directory again")

    init(_ bytes: [UInt8], maxEntries: Int) throws(BundleRefused) {
        self.bytes = bytes
        let reader = LittleEndianReader(bytes)
        let end = try Self.endRecord(reader)
        guard reader.u16(end + 4) == 0, reader.u16(end + 6) == 0 || reader.u16(end + 6) == 0xFFFF else {
            throw BundleRefused("the zip is split into several parts; make it one archive")
        }
        guard var count = reader.u16(end + 10).map(UInt64.init), var size = reader.u32(end + 12).map(UInt64.init),
            var offset = reader.u32(end + 16).map(UInt64.init)
        else { throw Self.notZip }
        // Where the central directory must end: at the end record, or at the ZIP64 end record.
        var directoryLimit = end
        if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            // ZIP64: a 20-byte locator just before the end record points to a 56-byte record.
            guard end >= 20, reader.u32(end - 20) == 0x0706_4b50, let recordAt = reader.u64(end - 20 + 8) else {
                throw Self.notZip
            }
            guard end >= 20 + 56, recordAt <= UInt64(end - 20 - 56) else { throw Self.damaged }
            let record = Int(recordAt)
            guard reader.u32(record) == 0x0606_4b50, let entries = reader.u64(record + 32), let directorySize = reader.u64(record + 40),
                let directoryOffset = reader.u64(record + 48)
            else { throw Self.damaged }
            (count, size, offset) = (entries, directorySize, directoryOffset)
            directoryLimit = record
        }
        guard count <= UInt64(max(0, maxEntries)) else {
            throw BundleRefused("the bundle has \(count) entries; the limit is \(maxEntries)")
        }
        // Both at most the archive's length: their sum cannot overflow.
        guard offset <= UInt64(directoryLimit), size <= UInt64(directoryLimit), offset + size <= UInt64(directoryLimit) else {
            throw Self.damaged
        }
        let directoryStart = Int(offset)
        let directoryEnd = directoryStart + Int(size)
        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        var cursor = directoryStart
        for _ in 0..<Int(count) {
            let (entry, next) = try Self.entry(at: cursor, directoryStart: directoryStart, directoryEnd: directoryEnd, reader)
            entries.append(entry)
            cursor = next
        }
        self.entries = entries
    }

    /// The end-of-central-directory record: the last one whose comment reaches exactly to
    /// the end of the archive (the comment is at most 64 KiB).
    private static func endRecord(_ reader: LittleEndianReader) throws(BundleRefused) -> Int {
        let count = reader.count
        guard count >= 22 else { throw notZip }
        var position = count - 22
        let lowest = max(0, count - 22 - 65_535)
        while position >= lowest {
            if reader.u32(position) == 0x0605_4b50, let comment = reader.u16(position + 20), position + 22 + Int(comment) == count {
                return position
            }
            position -= 1
        }
        throw notZip
    }

    /// One central-directory entry at `cursor`, checked against the archive, and where the
    /// next one begins.
    private static func entry(
        at cursor: Int, directoryStart: Int, directoryEnd: Int,
        _ reader: LittleEndianReader
    ) throws(BundleRefused) -> (Entry, Int) {
        guard cursor <= directoryEnd - 46, reader.u32(cursor) == 0x0201_4b50,
            let madeByField = reader.u16(cursor + 4), let flags = reader.u16(cursor + 8), let method = reader.u16(cursor + 10),
            let crc = reader.u32(cursor + 16), let compressed32 = reader.u32(cursor + 20), let uncompressed32 = reader.u32(cursor + 24),
            let nameLength = reader.u16(cursor + 28).map(Int.init), let extraLength = reader.u16(cursor + 30).map(Int.init),
            let commentLength = reader.u16(cursor + 32).map(Int.init), let external = reader.u32(cursor + 38),
            let local32 = reader.u32(cursor + 42)
        else { throw damaged }
        let nameStart = cursor + 46
        let extraStart = nameStart + nameLength
        let next = extraStart + extraLength + commentLength
        guard next <= directoryEnd else { throw damaged }
        let nameBytes = reader.bytes[nameStart..<extraStart]
        // Bit 11: UTF-8 names; otherwise code page 437, whose ASCII half is all we allow.
        guard let name = String(validating: nameBytes, as: UTF8.self) else {
            throw BundleRefused("an entry's name is not valid UTF-8")
        }
        let shown = "entry '\(name.cut(toBytes: 200))'"
        guard flags & 0x0800 != 0 || nameBytes.allSatisfy({ $0 < 0x80 }) else {
            throw BundleRefused("\(shown) has a name that is neither ASCII nor marked UTF-8")
        }
        guard flags & 0x0001 == 0 else { throw BundleRefused("\(shown) is encrypted; bundles may not be") }

        // Sizes and the local header's offset: 0xFFFFFFFF means "in the ZIP64 extra field",
        // in this order, each present only if its 32-bit field says so.
        var uncompressed = UInt64(uncompressed32)
        var compressed = UInt64(compressed32)
        var local = UInt64(local32)
        if uncompressed32 == 0xFFFF_FFFF || compressed32 == 0xFFFF_FFFF || local32 == 0xFFFF_FFFF {
            guard let zip64 = zip64Field(reader, from: extraStart, to: extraStart + extraLength) else {
                throw BundleRefused("\(shown) lacks the ZIP64 sizes its header announces")
            }
            var field = zip64.lowerBound
            func take() throws(BundleRefused) -> UInt64 {
                guard field <= zip64.upperBound - 8, let value = reader.u64(field) else {
                    throw BundleRefused("\(shown) has a ZIP64 field too short for the sizes its header announces")
                }
                field += 8
                return value
            }
            if uncompressed32 == 0xFFFF_FFFF { uncompressed = try take() }
            if compressed32 == 0xFFFF_FFFF { compressed = try take() }
            if local32 == 0xFFFF_FFFF { local = try take() }
        }

        let madeBy = madeByField >> 8
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
        guard method == 0 || method == 8 else {
            throw BundleRefused("\(shown) is compressed with method \(method); bundles use deflate (8) or no compression (0)")
        }

        // The data: after the local header, entirely before the central directory. Every
        // bound is the archive's length or less, so the sums below stay small.
        guard local <= UInt64(directoryStart), compressed <= UInt64(directoryStart), uncompressed <= UInt64(Int32.max) else {
            throw BundleRefused("\(shown) states sizes or an offset outside the archive")
        }
        let header = Int(local)
        guard header <= directoryStart - 30, reader.u32(header) == 0x0403_4b50,
            let localName = reader.u16(header + 26).map(Int.init), let localExtra = reader.u16(header + 28).map(Int.init)
        else {
            throw BundleRefused("\(shown) has no local header where the central directory says")
        }
        let dataOffset = header + 30 + localName + localExtra
        guard dataOffset <= directoryStart, Int(compressed) <= directoryStart - dataOffset else {
            throw BundleRefused("\(shown) states sizes or an offset outside the archive")
        }
        guard method == 8 || compressed == uncompressed else {
            throw BundleRefused("\(shown) is stored uncompressed but states two different sizes")
        }
        let entry = Entry(
            name: name, kind: kind, method: method, crc32: crc, compressedSize: Int(compressed),
            uncompressedSize: Int(uncompressed), dataOffset: dataOffset)
        return (entry, next)
    }

    /// The data of the ZIP64 extended-information field (id 0x0001) among the extra fields
    /// in `start..<end`, if there is one.
    private static func zip64Field(_ reader: LittleEndianReader, from start: Int, to end: Int) -> Range<Int>? {
        var cursor = start
        while cursor <= end - 4 {
            guard let id = reader.u16(cursor), let length = reader.u16(cursor + 2).map(Int.init) else { return nil }
            let data = cursor + 4
            guard length <= end - data else { return nil }
            if id == 0x0001 { return data..<(data + length) }
            cursor = data + length
        }
        return nil
    }

    /// Inflates (or copies) the entry, handing out its bytes in chunks of at most 64 KiB;
    /// `consume` may throw to stop early (a size limit). Checks the CRC-32 and the size the
    /// central directory states.
    func extract(_ entry: Entry, _ consume: (UnsafeRawBufferPointer) throws(BundleRefused) -> Void) throws(BundleRefused) {
        let shown = "entry '\(entry.name.cut(toBytes: 200))'"
        let damaged = BundleRefused("\(shown) is damaged (its data does not match its CRC-32 or size); zip the app again")
        var checksum: UInt = 0
        var produced = 0
        try bytes.withUnsafeBytes { archive in
            Result { () throws(BundleRefused) in try unpack(entry, from: archive, checksum: &checksum, produced: &produced, consume) }
        }.get()
        guard UInt32(truncatingIfNeeded: checksum) == entry.crc32, produced == entry.uncompressedSize else { throw damaged }
    }

    private func unpack(
        _ entry: Entry, from archive: UnsafeRawBufferPointer, checksum: inout UInt, produced: inout Int,
        _ consume: (UnsafeRawBufferPointer) throws(BundleRefused) -> Void
    ) throws(BundleRefused) {
        let shown = "entry '\(entry.name.cut(toBytes: 200))'"
        let damaged = BundleRefused("\(shown) is damaged (its data does not match its CRC-32 or size); zip the app again")
        do {
            let data = UnsafeRawBufferPointer(rebasing: archive[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
            if entry.method == 0 {
                var start = 0
                while start < data.count {
                    let chunk = UnsafeRawBufferPointer(rebasing: data[start..<min(start + (64 << 10), data.count)])
                    checksum = crc32(checksum, chunk.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(chunk.count))
                    produced += chunk.count
                    try consume(chunk)
                    start += chunk.count
                }
                return
            }
            var stream = z_stream()
            // Raw deflate (no zlib header), as zip stores it.
            guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw BundleRefused("\(shown) could not be unpacked (zlib did not start)")
            }
            defer { inflateEnd(&stream) }
            stream.next_in = UnsafeMutablePointer(mutating: data.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(data.count)
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 8)
            defer { output.deallocate() }
            while true {
                stream.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(output.count)
                let status = inflate(&stream, Z_NO_FLUSH)
                let count = output.count - Int(stream.avail_out)
                if count > 0 {
                    let chunk = UnsafeRawBufferPointer(rebasing: output[0..<count])
                    checksum = crc32(checksum, chunk.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(count))
                    produced += count
                    try consume(chunk)
                }
                if status == Z_STREAM_END { break }
                // Z_BUF_ERROR with nothing produced: the input ended before the stream did.
                guard status == Z_OK || (status == Z_BUF_ERROR && count > 0) else { throw damaged }
            }
        }
    }
}

/// Little-endian integers at byte offsets, nil when the offset is outside the bytes.
struct LittleEndianReader {
    let bytes: [UInt8]
    var count: Int { bytes.count }

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func u16(_ at: Int) -> UInt16? {
        guard at >= 0, at <= bytes.count - 2 else { return nil }
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    func u32(_ at: Int) -> UInt32? {
        guard at >= 0, at <= bytes.count - 4 else { return nil }
        return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    func u64(_ at: Int) -> UInt64? {
        guard let low = u32(at), let high = u32(at + 4) else { return nil }
        return UInt64(low) | UInt64(high) << 32
    }
}
