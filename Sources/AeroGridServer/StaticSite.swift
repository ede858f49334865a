import Crypto
public import Foundation
import HTTPTypes
public import Hummingbird

/// Files served as they are: the web console at `/` and the Excel add-in at `/excel/`.
/// Content types from the extension, an ETag and `Cache-Control: no-cache` (a browser
/// revalidates and gets 304 while nothing changed), a strict Content-Security-Policy, and
/// no path outside the site's directory.
public struct StaticSite: Sendable {
    /// The directory served.
    public let root: String
    /// The URL path it is served under, e.g. "/" or "/excel/".
    public let prefix: String
    public let contentSecurityPolicy: String
    /// Readable from any origin: Excel on the web fetches the add-in's metadata from its own
    /// domain. Only for public, static files.
    public let crossOrigin: Bool
    /// Rewrites a file before it is served (the add-in's manifest gets the server's public
    /// address, never one taken from the request). Throws an `APIError` to refuse it.
    public let transform: (@Sendable (_ file: String, _ contents: Data) throws -> Data)?

    public init(
        root: String, prefix: String, contentSecurityPolicy: String, crossOrigin: Bool = false,
        transform: (@Sendable (_ file: String, _ contents: Data) throws -> Data)? = nil
    ) {
        self.crossOrigin = crossOrigin
        self.root = root
        self.prefix = prefix
        self.contentSecurityPolicy = contentSecurityPolicy
        self.transform = transform
    }

    /// The Excel add-in at `/excel/`, readable from any origin. Its manifest names
    /// `publicURL`, where clients reach the server over HTTPS, and nothing a request says
    /// (a Host header would let anyone point it elsewhere); without one it is refused.
    public static func excelAddIn(root: String, contentSecurityPolicy: String, publicURL: String?) -> StaticSite {
        StaticSite(root: root, prefix: "/excel/", contentSecurityPolicy: contentSecurityPolicy, crossOrigin: true) { file, contents in
            guard file.hasSuffix(".xml") else { return contents }
            guard let publicURL else {
                throw APIError.notFound("the add-in's manifest names the server's public address: set public_url in aerogrid.toml (docs/operations.md)")
            }
            return Data(String(decoding: contents, as: UTF8.self).replacingOccurrences(of: "{{AEROGRID_BASE_URL}}", with: publicURL).utf8)
        }
    }

    static let contentTypes = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8", "json": "application/json", "svg": "image/svg+xml", "png": "image/png",
        "ico": "image/x-icon", "xml": "application/xml; charset=utf-8", "txt": "text/plain; charset=utf-8",
        "woff2": "font/woff2", "map": "application/json",
    ]

    /// The file for a request path under `prefix`, or nil when it is not one of the site's.
    func file(for path: String) -> String? {
        guard path.hasPrefix(prefix) || path + "/" == prefix else { return nil }
        var relative = String(path.dropFirst(min(prefix.count, path.count)))
        if relative.isEmpty || relative.hasSuffix("/") { relative += "index.html" }
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty || $0.hasPrefix(".") }),
            !relative.contains("\\"), !relative.contains("\0")
        else { return nil }
        let full = "\(root)/\(relative)"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue else { return nil }
        return full
    }

    func response(for request: Request) throws -> Response? {
        // "/excel" is the site's index with relative links that only work under "/excel/".
        if prefix.count > 1, request.uri.path + "/" == prefix {
            return Response(status: .movedPermanently, headers: [.location: prefix])
        }
        guard let path = file(for: request.uri.path) else { return nil }
        guard var contents = FileManager.default.contents(atPath: path) else { return nil }
        if let transform { contents = try transform(path, contents) }
        // Of the bytes served: a rewritten file changes its tag with what was written in.
        let etag = "\"" + SHA256.hash(data: contents).prefix(12).map { String(format: "%02x", $0) }.joined() + "\""
        let type = Self.contentTypes[(path as NSString).pathExtension.lowercased()] ?? "application/octet-stream"
        var headers: HTTPFields = [
            .contentType: type, .cacheControl: "no-cache", .eTag: etag,
            .contentSecurityPolicy: contentSecurityPolicy,
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
        if crossOrigin { headers[.accessControlAllowOrigin] = "*" }
        if request.headers[.ifNoneMatch] == etag {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: contents)))
    }
}

/// Serves the sites for GET requests no route took.
struct StaticSitesMiddleware<Context: RequestContext>: RouterMiddleware {
    let sites: [StaticSite]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && (request.method == .get || request.method == .head) {
            guard !request.uri.path.hasPrefix("/api/") else { throw error }
            // The longest prefix first: /excel/ before /.
            for site in sites.sorted(by: { $0.prefix.count > $1.prefix.count }) {
                if let response = try site.response(for: request) { return response }
            }
            throw error
        }
    }
}
