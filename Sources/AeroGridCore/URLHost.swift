/// Whether `host` (the part of a URL's authority before the port) is a DNS name or an IPv4
/// address (letters, digits, `.`, `-`) or a bracketed IPv6 address: what a URL written into
/// a manifest or given to another node may name.
public func isPlainURLHost(_ host: Substring) -> Bool {
    let plain = host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
    let bracketed = host.hasPrefix("[") && host.hasSuffix("]") && host.dropFirst().dropLast().allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
    return !host.isEmpty && (plain || bracketed)
}
