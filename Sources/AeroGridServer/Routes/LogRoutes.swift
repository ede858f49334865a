import AeroGridAPI
import AeroGridRuntime
import Hummingbird
import ServiceLifecycle
import Synchronization

/// An app's log: its last lines, or followed as NDJSON until the client goes, the app is
/// deleted, or the caller's token is revoked (a session).
struct LogRoutes: Sendable {
    let apps: AppService
    let sessions: Sessions

    func register(on api: RouterGroup<APIContext>) {
        api.get("apps/:app/logs", use: logs)
    }

    @Sendable private func logs(_ request: Request, _ context: APIContext) async throws -> Response {
        let (tenant, principal) = try context.requireTenant(.viewer)
        let app = try await apps.app(tenant, try context.parameters.require("app"))
        let tail = try request.queryInt("tail", default: 100, range: 1...10_000)
        let follow = try request.queryBool("follow")
        // Wherever the app runs: here, or on the node of the cluster that runs it.
        let logs = AppLogs(apps: apps)
        let first = await logs.page(app, after: nil, tail: tail)
        guard follow else {
            var body = Array(#"{"lines":["#.utf8)
            for (index, line) in (first?.lines ?? []).enumerated() { body += (index > 0 ? [UInt8(ascii: ",")] : []) + line }
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body + Array("]}".utf8))))
        }
        // A session: revoking the token or deleting the tenant ends the follow at once.
        let ended = Mutex(false)
        let session = sessions.open(tokenID: principal.tokenID, tenantID: principal.tenantID) { _ in ended.withLock { $0 = true } }
        let (apps, sessions) = (apps, sessions)
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson"],
            body: ResponseBody { writer in
                defer { sessions.close(session) }
                for line in first?.lines ?? [] { try await writer.write(Self.ndjson(line)) }
                var run = first?.run
                var seen = first?.total ?? 0
                // Ends when the client goes away (the write throws), the server stops, or
                // the app is deleted. A start, restart, new version or move to another node
                // brings a new run with a log of its own: followed from its first line.
                var checked = ContinuousClock.now
                while !Task.isCancelled && !Task.isShuttingDownGracefully && !ended.withLock({ $0 }) {
                    if ContinuousClock.now - checked > .milliseconds(500) {
                        checked = .now
                        guard try await apps.store.app(tenant: tenant, name: app.name) != nil else { break }
                    }
                    if let page = await logs.page(app, after: seen, tail: 10_000) {
                        if page.run != run {
                            run = page.run
                            seen = 0
                            continue
                        }
                        seen = page.total
                        for line in page.lines { try await writer.write(Self.ndjson(line)) }
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
                try await writer.finish(nil)
            })
    }

    private static func ndjson(_ line: [UInt8]) -> ByteBuffer {
        ByteBuffer(bytes: line + [UInt8(ascii: "\n")])
    }
}

extension Schemas.LogLine {
    init(_ line: AppLog.Line) {
        self.init(time: line.time, source: Schemas.LogLine.SourcePayload(rawValue: line.source) ?? .supervisor, level: line.level, message: line.text)
    }
}
