import AeroGridAPI
import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where the API is and who calls it: `--server` and `--token`, or `AEROGRID_SERVER` and
/// `AEROGRID_TOKEN`.
struct ClientOptions: ParsableArguments {
    @Option(help: "The server's URL (default: $AEROGRID_SERVER, else http://127.0.0.1:8080).")
    var server: String?

    @Option(help: "A bearer token (default: $AEROGRID_TOKEN).")
    var token: String?

    @Flag(help: "Print the server's JSON instead of a table.")
    var json = false

    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let base = server ?? environment["AEROGRID_SERVER"] ?? "http://127.0.0.1:8080"
        guard let url = URL(string: base), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--server must be a URL such as https://aerogrid.example.com or http://127.0.0.1:8080, not '\(base)'")
        }
        guard let token = token ?? environment["AEROGRID_TOKEN"], !token.isEmpty else {
            throw ValidationError("a token is needed: --token agt_… or AEROGRID_TOKEN (aerogrid dev prints one)")
        }
        return APIClient(base: url, token: token)
    }
}

/// Exit codes scripts can rely on; every failure also prints one line on stderr.
enum ClientExit {
    /// The server refused the request (a 4xx other than those below); the message says why.
    static let refused: Int32 = 1
    /// No such tenant, token, app or grid (404).
    static let notFound: Int32 = 2
    /// The token is missing, unknown or revoked (401), or its role may not (403).
    static let notAllowed: Int32 = 3
    /// The server could not be reached, or failed (5xx).
    static let unavailable: Int32 = 4
}

/// An API error as the CLI reports it, with its exit code.
struct ClientError: Error, CustomStringConvertible {
    let message: String
    let exitCode: Int32
    var description: String { message }

    static func from(status: Int, body: Data) -> ClientError {
        var message = "HTTP \(status)"
        let error = try? APIClient.decoder.decode(Schemas._Error.self, from: body).error
        if let error { message = "\(error.message) (\(error.code.rawValue), HTTP \(status))" }
        let code: Int32 =
            switch status {
            case 404: ClientExit.notFound
            case 401, 403: error?.code == .overQuota ? ClientExit.refused : ClientExit.notAllowed
            case 500...: ClientExit.unavailable
            default: ClientExit.refused
            }
        return ClientError(message: message, exitCode: code)
    }
}

/// A small client of the REST API over URLSession.
struct APIClient {
    let base: URL
    let token: String

    /// How the API's answers are read: its types, dates in ISO 8601.
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// An answer of the API as its schema type.
    func decode<Answer: Decodable>(_ type: Answer.Type, _ data: Data) throws -> Answer {
        do {
            return try Self.decoder.decode(type, from: data)
        } catch {
            throw ClientError(message: "the server's answer is not the \(type) the API describes: \(error)", exitCode: ClientExit.unavailable)
        }
    }

    /// Sends a request and returns the answer's body; a status other than 2xx throws.
    /// `json` is written with its absent fields left out (in a quota change, a field
    /// written as null would reset it).
    func request(
        _ method: String, _ path: String, query: String? = nil, json: (any Encodable)? = nil, body: Data? = nil,
        contentType: String? = nil, accept: String = "application/json",
        progress: ((Int64, Int64) -> Void)? = nil
    ) async throws -> Data {
        var components = URLComponents(url: base.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        components.percentEncodedQuery = query
        var request = URLRequest(url: components.url!)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue(accept, forHTTPHeaderField: "Accept")
        var payload = body
        if let json {
            payload = try JSONEncoder().encode(json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let contentType {
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        request.timeoutInterval = 120
        let delegate = TransferDelegate(progress: progress)
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let (status, data) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Int, Data), any Error>) in
            delegate.completion = { result in continuation.resume(with: result) }
            let task = payload.map { session.uploadTask(with: request, from: $0) } ?? session.dataTask(with: request)
            task.resume()
        }
        guard (200..<300).contains(status) else { throw ClientError.from(status: status, body: data) }
        return data
    }

    /// Streams a response body, line by line, until the server ends it or Ctrl-C.
    func stream(_ path: String, query: String, onLine: @escaping (Data) -> Void) async throws {
        var components = URLComponents(url: base.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        components.percentEncodedQuery = query
        var request = URLRequest(url: components.url!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 24 * 3600
        let delegate = TransferDelegate(progress: nil)
        delegate.onLine = onLine
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        defer { session.invalidateAndCancel() }
        let (status, data) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Int, Data), any Error>) in
            delegate.completion = { result in continuation.resume(with: result) }
            session.dataTask(with: request).resume()
        }
        guard (200..<300).contains(status) else { throw ClientError.from(status: status, body: data) }
    }
}

/// Collects a response (or passes it on line by line) and reports upload progress.
private final class TransferDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    // @unchecked: URLSession calls a delegate on its one serial delegate queue.
    var completion: ((Result<(Int, Data), any Error>) -> Void)?
    var onLine: ((Data) -> Void)?
    let progress: ((Int64, Int64) -> Void)?
    private var data = Data()
    private var status = 0

    init(progress: ((Int64, Int64) -> Void)?) {
        self.progress = progress
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        status = (response as? HTTPURLResponse)?.statusCode ?? 0
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive chunk: Data) {
        data.append(chunk)
        guard let onLine, (200..<300).contains(status) else { return }
        while let newline = data.firstIndex(of: UInt8(ascii: "\n")) {
            onLine(data[data.startIndex..<newline])
            data.removeSubrange(data.startIndex...newline)
        }
    }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, didSendBodyData bytesSent: Int64, totalBytesSent: Int64,
        totalBytesExpectedToSend: Int64
    ) {
        progress?(totalBytesSent, totalBytesExpectedToSend)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        if let error {
            let host = task.originalRequest?.url?.host ?? "the server"
            completion?(.failure(ClientError(message: "cannot reach \(host): \(error.localizedDescription)", exitCode: ClientExit.unavailable)))
        } else {
            completion?(.success((status, data)))
        }
        completion = nil
    }
}

/// Prints rows as a left-aligned table with a header.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        printLine(
            row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}

/// A value as a table cell: "-" for none.
protocol TableCell {
    var cellText: String { get }
}

extension String: TableCell {
    var cellText: String { self }
}

extension Int: TableCell {
    var cellText: String { String(self) }
}

extension Double: TableCell {
    var cellText: String { String(self) }
}

extension Date: TableCell {
    var cellText: String { APIJSON.time(self) }
}

extension Optional: TableCell where Wrapped: TableCell {
    var cellText: String { self?.cellText ?? "-" }
}

extension Schemas.GridValue: TableCell {
    /// JSON has one kind of number: a whole one is shown without a fraction.
    var cellText: String {
        if let text = value1 { return text }
        if let number = value2 {
            return number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        }
        return value3.map { String($0) } ?? "-"
    }
}

func cell(_ value: some TableCell) -> String { value.cellText }

func printJSON(_ data: Data) {
    if let object = try? JSONSerialization.jsonObject(with: data),
        let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    {
        printLine(String(decoding: pretty, as: UTF8.self))
    } else {
        printLine(String(decoding: data, as: UTF8.self))
    }
}

/// Runs a client command: API errors become one line on stderr and their exit code.
func runClient(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ClientError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        throw ExitCode(error.exitCode)
    }
}
