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
        let current = await apps.supervisor.runner(tenant: tenant, name: app.name)?.log
        guard follow else { return json(Schemas.LogLines(lines: (current?.tail(tail) ?? []).map(Schemas.LogLine.init))) }
        let first = current?.tail(tail) ?? []
        let seen = current?.totalLines ?? 0
        // A session: revoking the token or deleting the tenant ends the follow at once.
        let ended = Mutex(false)
        let session = sessions.open(tokenID: principal.tokenID, tenantID: principal.tenantID) { _ in ended.withLock { $0 = true } }
        let (apps, sessions) = (apps, sessions)
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson"],
            body: ResponseBody { writer in
                defer { sessions.close(session) }
                for line in first { try await writer.write(Self.ndjson(line)) }
                var log = current
                var seen = seen
                // Ends when the client goes away (the write throws), the server stops, or
                // the app is deleted. A start, restart or new version brings a new run
                // with a log of its own: followed from its first line.
                var checked = ContinuousClock.now
                while !Task.isCancelled && !Task.isShuttingDownGracefully && !ended.withLock({ $0 }) {
                    if ContinuousClock.now - checked > .milliseconds(500) {
                        checked = .now
                        guard try await apps.store.app(tenant: tenant, name: app.name) != nil else { break }
                        let now = await apps.supervisor.runner(tenant: tenant, name: app.name)?.log
                        if now !== log {
                            log = now
                            seen = 0
                        }
                    }
                    if let log {
                        let (lines, total) = log.lines(after: seen)
                        seen = total
                        for line in lines { try await writer.write(Self.ndjson(line)) }
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
                try await writer.finish(nil)
            })
    }

    private static func ndjson(_ line: AppLog.Line) -> ByteBuffer {
        ByteBuffer(bytes: APIJSON.encode(Schemas.LogLine(line)) + [UInt8(ascii: "\n")])
    }
}

extension Schemas.LogLine {
    init(_ line: AppLog.Line) {
        self.init(time: line.time, source: Schemas.LogLine.SourcePayload(rawValue: line.source) ?? .supervisor, level: line.level, message: line.text)
    }
}
