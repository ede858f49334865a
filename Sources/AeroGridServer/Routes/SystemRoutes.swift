import AeroGridAPI
import Hummingbird

/// Health, readiness, the API's own document, and the operator's metrics.
struct SystemRoutes: Sendable {
    let readiness: @Sendable () async -> String?
    let metrics: ServerMetrics
    let supervisor: AppSupervisor
    let stream: @Sendable () -> (connections: Int, subscriptions: Int, blocked: Int)

    func register(on router: Router<APIContext>, auth: AuthMiddleware) {
        router.get("healthz") { _, _ in json(Schemas.Health(status: .ok)) }
        router.get("readyz") { _, _ in
            // The answer names what is not ready, never an address or an error text.
            if let problem = await readiness() { throw APIError(.serviceUnavailable, .notReady, problem) }
            return json(Schemas.Ready(status: .ready))
        }
        router.get("api/v1/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }
        router.group("metrics").add(middleware: auth).get { _, context in
            _ = try context.requireOperator()
            let text = await metrics.scrape(supervisor, stream: stream())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
    }
}
