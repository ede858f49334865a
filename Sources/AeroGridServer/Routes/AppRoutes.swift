import AeroGridAPI
import AeroGridStore
import Foundation
import Hummingbird

/// A tenant's apps: deploy a bundle, list, read, start, stop, restart, delete. Another
/// tenant's app is "not found", never "forbidden".
struct AppRoutes: Sendable {
    let apps: AppService
    let bodies: RequestBodies
    let auditor: Auditor

    func register(on api: RouterGroup<APIContext>) {
        api.post("apps", use: deploy)
        api.get("apps") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            var list: [Schemas.App] = []
            for app in try await apps.store.apps(tenant: tenant) { list.append(await apps.describe(app)) }
            return json(Schemas.AppList(apps: list))
        }
        api.get("apps/:app") { _, context in
            let (tenant, _) = try context.requireTenant(.viewer)
            return json(await apps.describe(try await apps.app(tenant, try context.parameters.require("app"))))
        }
        api.post("apps/:app/start") { _, context in try await run(context, action: "start", restart: false) }
        api.post("apps/:app/restart") { _, context in try await run(context, action: "restart", restart: true) }
        api.post("apps/:app/stop") { _, context in
            let (tenant, principal) = try context.requireTenant(.developer)
            let app = try await apps.app(tenant, try context.parameters.require("app"))
            let stopped = try await apps.stop(tenant, app.name)
            try await auditor.record(principal, "app.stop", target: app.name, context)
            return json(await apps.describe(stopped))
        }
        api.delete("apps/:app") { _, context in
            let (tenant, principal) = try context.requireTenant(.developer)
            let app = try await apps.app(tenant, try context.parameters.require("app"))
            try await apps.delete(tenant, app.name)
            try await auditor.record(principal, "app.delete", target: app.name, context)
            return Response(status: .noContent)
        }
    }

    @Sendable private func deploy(_ request: Request, _ context: APIContext) async throws -> Response {
        let (tenant, principal) = try context.requireTenant(.developer)
        let body: ByteBuffer
        do {
            body = try await bodies.collect(request, upTo: context.maxUploadSize, what: "the bundle")
        } catch let error as APIError where error.status == .contentTooLarge {
            throw APIError.tooLarge("the bundle is larger than \(apps.bundles.limits.maxUploadBytes >> 20) MiB, the limit")
        }
        let record = try await apps.planner.tenant(tenant)
        do {
            let (app, created) = try await apps.deploy(Data(buffer: body), tenant: record)
            try await auditor.record(principal, "app.deploy", target: app.name, context, outcome: "ok: version \(app.version)")
            return json(await apps.describe(app), status: created ? .created : .ok)
        } catch let error as BundleRefused {
            try await auditor.record(principal, "app.deploy", target: "?", context, outcome: "refused: \(error.message)")
            throw error.tooLarge ? APIError.tooLarge(error.message) : APIError.invalidBundle(error.message)
        }
    }

    private func run(_ context: APIContext, action: String, restart: Bool) async throws -> Response {
        let (tenant, principal) = try context.requireTenant(.developer)
        let stored = try await apps.app(tenant, try context.parameters.require("app"))
        let app = try await apps.start(tenant, stored.name, restart: restart)
        try await auditor.record(principal, "app.\(action)", target: app.name, context)
        return json(await apps.describe(app))
    }
}
