extension String {
    /// At most `limit` bytes of the text's UTF-8, cut on a scalar boundary, with "…" after
    /// a cut: how text a tenant or client chose is shown in a message or kept. (`prefix(n)`
    /// counts Characters, and one Character can be megabytes of combining marks.)
    public func cut(toBytes limit: Int) -> String {
        let utf8 = self.utf8
        guard utf8.count > limit else { return self }
        var end = utf8.index(utf8.startIndex, offsetBy: Swift.max(0, limit))
        while end > utf8.startIndex && UTF8.isContinuation(utf8[end]) { end = utf8.index(before: end) }
        return String(decoding: utf8[..<end], as: UTF8.self) + "…"
    }
}

/// Ids the platform gives out: a prefix and 16 random hex digits (`tok_…`, `ten_…`).
public enum RandomID {
    public static func make(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        return prefix
            + (0..<8).map { _ in
                let byte = UInt8.random(in: 0...255, using: &generator)
                return String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
            }.joined()
    }
}
