import AeroGridAPI
import ArgumentParser
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOSSL

/// `aerogrid grid watch APP GRID`: the grid live in the terminal over the stream
/// (docs/protocol.md), redrawn in place; `--json` prints the raw messages instead.
struct GridWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Show a grid live: a table redrawn in place, or --json messages.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String
    @Argument(help: "The grid.") var grid: String
    @Option(help: "Messages a second at most (the server caps it).") var maxRate = 4
    @Option(help: "Only these keys, comma-separated.") var keys: String?

    func run() async throws {
        try await runClient {
            let api = try client.client()
            var components = URLComponents(url: api.base.appendingPathComponent("api/v1/stream"), resolvingAgainstBaseURL: false)!
            components.scheme = api.base.scheme == "https" ? "wss" : "ws"
            let first = try JSONEncoder().encode(Auth(token: api.token))
            let second = try JSONEncoder().encode(Subscribe(app: app, grid: grid, maxRate: maxRate, keys: keys?.split(separator: ",").map(String.init)))
            let json = client.json
            let view = GridView(title: "\(app)/\(grid)")
            var logger = Logger(label: "aerogrid.watch")
            logger.logLevel = .critical
            let failure = try await WebSocketClient.connect(
                url: components.string!, tlsConfiguration: api.base.scheme == "https" ? .makeClientConfiguration() : nil, logger: logger
            ) { inbound, outbound, _ in
                try await outbound.write(.text(String(decoding: first, as: UTF8.self)))
                try await outbound.write(.text(String(decoding: second, as: UTF8.self)))
                for try await message in inbound.messages(maxSize: 64 << 20) {
                    guard case .text(let text) = message else { continue }
                    if json {
                        printLine(text)
                        continue
                    }
                    guard let message = try? JSONDecoder().decode(StreamMessage.self, from: Data(text.utf8)) else { continue }
                    if message.type == "error" {
                        let code = message.code ?? "error"
                        throw ClientError(
                            message: "\(message.message ?? "error") (\(code))",
                            exitCode: code == "not_found"
                                ? ClientExit.notFound : code == "unauthorized" || code == "forbidden" ? ClientExit.notAllowed : ClientExit.refused)
                    }
                    view.apply(message)
                }
            }
            if let failure, failure.closeCode != .normalClosure {
                throw ClientError(message: "the server closed the stream: \(failure.reason ?? "\(failure.closeCode)")", exitCode: ClientExit.unavailable)
            }
        }
    }
}

/// The grid as the stream describes it, printed as a table on every change.
final class GridView: @unchecked Sendable {
    // @unchecked: used from the one task reading the stream.
    private let title: String
    private var columns: [String] = []
    private var rows: [String: [String: Schemas.GridValue?]] = [:]
    private var epoch: Int64 = 0
    private var version: Int64 = 0

    init(title: String) {
        self.title = title
    }

    func apply(_ message: StreamMessage) {
        switch message.type {
        case "snapshot":
            columns = message.columns ?? []
            rows = [:]
            fallthrough
        case "delta":
            for row in message.rows ?? [] {
                if let cells = row.cells {
                    rows[row.key, default: [:]].merge(cells) { $1 }
                    for column in cells.keys where !columns.contains(column) { columns.append(column) }
                } else {
                    rows[row.key] = nil
                }
            }
            epoch = message.epoch ?? epoch
            version = message.version ?? version
            draw()
        default:
            break
        }
    }

    private func draw() {
        // Clear the screen and go home, then the table.
        FileHandle.standardOutput.write(Data("\u{1B}[H\u{1B}[2J".utf8))
        printLine("\(title)  epoch \(epoch)  version \(version)  \(rows.count) rows   (Ctrl-C to stop)")
        printTable(
            ["KEY"] + columns.map { $0.uppercased() },
            rows.keys.sorted().map { key in
                [key] + columns.map { cell(rows[key]?[$0] ?? nil) }
            })
    }
}

/// `{"op":"auth","token":…}`: the stream's first message.
private struct Auth: Encodable {
    let op = "auth"
    let token: String
}

/// `{"op":"subscribe",…}` for the one grid watched.
private struct Subscribe: Encodable {
    let op = "subscribe"
    let id = "watch"
    let app: String
    let grid: String
    let maxRate: Int
    let keys: [String]?

    enum CodingKeys: String, CodingKey {
        case op, id, app, grid, keys
        case maxRate = "max_rate"
    }
}
