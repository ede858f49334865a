import AeroGridAPI
import AeroGridCore
import Hummingbird

/// An app's grids over REST: the list, and one whole grid as JSON or CSV. Whole-grid reads
/// take one of the tenant's few slots, held until the connection closes.
struct GridRoutes: Sendable {
    let apps: AppService
    let gate: ConnectionGate?
    let gridReads: GridReads

    func register(on api: RouterGroup<APIContext>) {
        api.get("apps/:app/grids") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            let grids = try await apps.grids(try await apps.app(tenant, try context.parameters.require("app")))
            return json(
                Schemas.GridList(
                    grids: grids.keys.sorted().map { name in
                        let grid = grids[name]!
                        return Schemas.GridSummary(name: name, version: Int(clamping: grid.version), rows: grid.rows.count, columns: grid.columns)
                    }))
        }
        api.get("apps/:app/grids/:grid", use: grid)
    }

    @Sendable private func grid(_ request: Request, _ context: APIContext) async throws -> Response {
        let (tenant, _) = try context.requireTenant(.viewer)
        let app = try await apps.app(tenant, try context.parameters.require("app"))
        let name = try context.parameters.require("grid")
        let format = request.uri.queryParameters["format"].map(String.init)
        guard format == nil || format == "json" || format == "csv" else {
            throw APIError.badRequest("format must be json or csv, not '\(format!.cut(toBytes: 64))'")
        }
        // A slot per connection, held until it closes: the server holds the answer until the
        // client reads it, and nothing tells when that was short of the connection going.
        let tenantID = context.principal?.tenantID ?? tenant
        if let gate {
            guard gridReads.take(tenantID, connection: context.connection, gate: gate) else {
                throw APIError(
                    .tooManyRequests, .tooManyRequests,
                    "tenant \(tenant) has \(gridReads.limit) connections reading whole grids; close one, or try again later")
            }
        }
        guard let grid = try await apps.grids(app, only: name)[name] else {
            throw APIError.notFound("app '\(app.name)' has no grid '\(name.cut(toBytes: 64))'")
        }
        let wantsCSV = format == "csv" || (format == nil && request.headers[.accept]?.contains("text/csv") == true)
        if wantsCSV {
            return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: grid.csv)))
        }
        // Written by JSONWriter, not as Schemas.Grid: a cell keeps its JSON type (4.0 stays 4.0).
        var json = JSONWriter(capacity: 128 + grid.rows.count * 64)
        json.raw("{\"columns\":")
        json.strings(grid.columns)
        json.raw(",\"epoch\":")
        json.number(grid.epoch)
        json.raw(",\"name\":")
        json.string(name)
        json.raw(",\"rows\":")
        json.rowsByKey(grid.rows)
        json.raw(",\"version\":")
        json.number(grid.version)
        json.raw("}")
        return JSONResponse.make(bytes: json.bytes)
    }
}
