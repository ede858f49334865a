import AeroGridAPI
import AeroGridSandbox
import ArgumentParser
import Foundation
import ZIPFoundation

// The CLI over the REST API (docs/api.md): tables for people, --json for scripts, exit
// codes from `ClientExit`.

struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant", abstract: "Tenants (operator token).", subcommands: [Create.self, List.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant; prints its first admin token (shown once).")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The tenant's name.") var name: String
        @Option(help: "Topics its apps may read, comma-separated names or prefixes ending in * (default: NAME.*).")
        var topics: String?

        func run() async throws {
            try await runClient {
                let body = Schemas.CreateTenant(
                    name: name, topics: topics.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } })
                let api = try client.client()
                let data = try await api.request("POST", "api/v1/tenants", json: body)
                if client.json { return printJSON(data) }
                let created = try api.decode(Schemas.TenantCreated.self, data)
                printLine("created tenant \(created.tenant.name)")
                printLine("admin token (shown once): \(created.adminToken.secret)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runClient {
                let api = try client.client()
                let data = try await api.request("GET", "api/v1/tenants")
                if client.json { return printJSON(data) }
                let tenants = try api.decode(Schemas.TenantList.self, data).tenants
                printTable(["NAME", "APPS", "CREATED"], tenants.map { [$0.name, cell($0.apps), cell($0.createdAt)] })
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a tenant: its apps stop and go, its tokens are revoked.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The tenant's name.") var name: String

        func run() async throws {
            try await runClient {
                _ = try await client.client().request("DELETE", "api/v1/tenants/\(name)")
                if !client.json { printLine("deleted tenant \(name)") }
            }
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "The tenant's tokens (admin token).", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token; prints its secret (shown once).")
        @OptionGroup var client: ClientOptions
        @Argument(help: "A name for the token, e.g. ci or alice.") var name: String
        @Option(help: "admin, developer or viewer.") var role = RoleOption(role: .developer)

        func run() async throws {
            try await runClient {
                let api = try client.client()
                let data = try await api.request("POST", "api/v1/tokens", json: Schemas.CreateToken(name: name, role: role.role))
                if client.json { return printJSON(data) }
                let token = try api.decode(Schemas.NewToken.self, data)
                printLine("created token \(token.id) (\(token.role.rawValue))")
                printLine("secret (shown once): \(token.secret)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tenant's tokens (never their secrets).")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runClient {
                let api = try client.client()
                let data = try await api.request("GET", "api/v1/tokens")
                if client.json { return printJSON(data) }
                let tokens = try api.decode(Schemas.TokenList.self, data).tokens
                printTable(
                    ["ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"],
                    tokens.map {
                        [$0.id, $0.name, $0.role.rawValue, cell($0.createdAt), cell($0.lastUsedAt), cell($0.revokedAt)]
                    })
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token: it stops working at once.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The token's id (tok_…).") var id: String

        func run() async throws {
            try await runClient {
                _ = try await client.client().request("DELETE", "api/v1/tokens/\(id)")
                if !client.json { printLine("revoked \(id)") }
            }
        }
    }
}

struct QuotaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota", abstract: "Tenant and app quotas (operator token).", subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a tenant's quota and use, or one app's quota.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The tenant.") var tenant: String
        @Argument(help: "An app of the tenant.") var app: String?

        func run() async throws {
            try await runClient {
                let api = try client.client()
                if let app {
                    let data = try await api.request("GET", "api/v1/tenants/\(tenant)/apps/\(app)/quota")
                    if client.json { return printJSON(data) }
                    printQuota(try api.decode(Schemas.AppQuota.self, data))
                } else {
                    let data = try await api.request("GET", "api/v1/tenants/\(tenant)/quota")
                    if client.json { return printJSON(data) }
                    printQuota(try api.decode(Schemas.TenantQuota.self, data))
                }
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a tenant's quota, or one app's (applied to a running app's cgroup at once).")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The tenant.") var tenant: String
        @Argument(help: "An app of the tenant.") var app: String?
        @Option(help: "Memory, e.g. 512M or 2G.") var memory: String?
        @Option(help: "CPU cores, e.g. 0.5.") var cpus: Double?
        @Option(help: "Processes and threads (app).") var pids: Int?
        @Option(help: "Rows across the app's grids (app).") var gridRows: Int?
        @Option(help: "Apps the tenant may have (tenant).") var maxApps: Int?
        @Option(help: "Client connections the tenant may have (tenant).") var maxConnections: Int?
        @Option(help: "Stream subscriptions over all the tenant's connections (tenant).") var maxSubscriptions: Int?

        func validate() throws {
            if app != nil && (maxApps != nil || maxConnections != nil || maxSubscriptions != nil) {
                throw ValidationError("--max-apps, --max-connections and --max-subscriptions are tenant quotas: leave out the app")
            }
            if app == nil && (pids != nil || gridRows != nil) {
                throw ValidationError("--pids and --grid-rows are app quotas: name the app")
            }
            if let memory, parseSize(memory) == nil { throw ValidationError("--memory takes a size such as 512M or 2G, not '\(memory)'") }
        }

        func run() async throws {
            try await runClient {
                let memoryBytes = memory.flatMap(parseSize).map { Int(clamping: $0) }
                guard
                    memoryBytes != nil || cpus != nil || pids != nil || gridRows != nil || maxApps != nil || maxConnections != nil
                        || maxSubscriptions != nil
                else { throw ValidationError("nothing to set: give --memory, --cpus, … (see --help)") }
                let api = try client.client()
                if let app {
                    let change = Schemas.AppQuotaUpdate(memoryBytes: memoryBytes, cpus: cpus, pids: pids, gridRows: gridRows)
                    let data = try await api.request("PUT", "api/v1/tenants/\(tenant)/apps/\(app)/quota", json: change)
                    if client.json { return printJSON(data) }
                    printQuota(try api.decode(Schemas.AppQuota.self, data))
                } else {
                    let change = Schemas.TenantQuotaUpdate(
                        maxApps: maxApps, memoryBytes: memoryBytes, cpus: cpus, maxConnections: maxConnections, maxSubscriptions: maxSubscriptions)
                    let data = try await api.request("PUT", "api/v1/tenants/\(tenant)/quota", json: change)
                    if client.json { return printJSON(data) }
                    printQuota(try api.decode(Schemas.TenantQuota.self, data))
                }
            }
        }
    }
}

private func printQuota(_ quota: Schemas.TenantQuota) {
    printTable(
        ["QUOTA", "LIMIT", "USED"],
        [
            ["cpus", cell(quota.cpus), cell(quota.used.cpus)],
            ["max_apps", cell(quota.maxApps), cell(quota.used.apps)],
            ["max_connections", cell(quota.maxConnections), "-"],
            ["max_subscriptions", cell(quota.maxSubscriptions), "-"],
            ["memory_bytes", cell(quota.memoryBytes), cell(quota.used.memoryBytes)],
        ])
}

private func printQuota(_ quota: Schemas.AppQuota) {
    printTable(
        ["QUOTA", "LIMIT"],
        [
            ["cpus", cell(quota.cpus)], ["grid_rows", cell(quota.gridRows)], ["memory_bytes", cell(quota.memoryBytes)], ["pids", cell(quota.pids)],
        ])
}

struct ACLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl", abstract: "The topics a tenant's apps may read (operator token).", subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a tenant's topic rules.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The tenant.") var tenant: String

        func run() async throws {
            try await runClient {
                let api = try client.client()
                let data = try await api.request("GET", "api/v1/tenants/\(tenant)/acl")
                if client.json { return printJSON(data) }
                for rule in try api.decode(Schemas.TopicRules.self, data).topics { printLine(rule) }
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a tenant's topic rules: topic names, or prefixes ending in * (market.*); * alone allows all.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The tenant.") var tenant: String
        @Argument(help: "The rules (none: no topic).") var rules: [String] = []

        func run() async throws {
            try await runClient {
                let data = try await client.client().request("PUT", "api/v1/tenants/\(tenant)/acl", json: Schemas.TopicRules(topics: rules))
                if client.json { return printJSON(data) }
                printLine("tenant \(tenant) may read: \(rules.isEmpty ? "no topic" : rules.joined(separator: " "))")
            }
        }
    }
}

// MARK: Apps

struct AppDeploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy", abstract: "Zip an app's directory (app.toml and the code) and upload it: a new app or its next version.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app's directory.") var directory: String

    func run() async throws {
        try await runClient {
            let zip = try BundleZip.make(directory: directory)
            let name = URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent
            let quiet = client.json
            let api = try client.client()
            let data = try await api.request(
                "POST", "api/v1/apps", body: zip, contentType: "application/zip",
                progress: { sent, total in
                    guard !quiet, total > 0 else { return }
                    FileHandle.standardError.write(Data("\ruploading \(name): \(sent * 100 / total)% of \(total) bytes".utf8))
                })
            if !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
            if client.json { return printJSON(data) }
            let app = try api.decode(Schemas.App.self, data)
            printLine("deployed \(app.name) version \(app.version) (\(app.state.rawValue), desired \(app.desiredState.rawValue))")
        }
    }
}

struct AppList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the tenant's apps.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runClient {
            let api = try client.client()
            let data = try await api.request("GET", "api/v1/apps")
            if client.json { return printJSON(data) }
            let apps = try api.decode(Schemas.AppList.self, data).apps
            printTable(
                ["NAME", "VERSION", "STATE", "DESIRED", "RESTARTS", "RECORDS", "LAG"],
                apps.map {
                    [$0.name, cell($0.version), $0.state.rawValue, $0.desiredState.rawValue, cell($0.restarts), cell($0.records), cell($0.lag)]
                })
        }
    }
}

struct AppStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "One app's state, crash reason, lag and usage.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String

    func run() async throws {
        try await runClient {
            let api = try client.client()
            let data = try await api.request("GET", "api/v1/apps/\(app)")
            if client.json { return printJSON(data) }
            let app = try api.decode(Schemas.App.self, data)
            let usage = app.usage.map { "cpu_seconds=\(cell($0.cpuSeconds)) memory_bytes=\($0.memoryBytes) pids=\($0.pids)" }
            let quota = "cpus=\(cell(app.quota.cpus)) grid_rows=\(app.quota.gridRows) memory_bytes=\(app.quota.memoryBytes) pids=\(app.quota.pids)"
            printTable(
                ["FIELD", "VALUE"],
                [
                    ["name", app.name], ["version", cell(app.version)], ["state", app.state.rawValue], ["desired_state", app.desiredState.rawValue],
                    ["crash_reason", cell(app.crashReason?.rawValue)], ["last_crash", cell(app.lastCrash)], ["restarts", cell(app.restarts)],
                    ["records", cell(app.records)], ["lag", cell(app.lag)], ["usage", cell(usage)], ["quota", quota],
                    ["bundle_digest", app.bundleDigest], ["updated_at", cell(app.updatedAt)],
                ])
        }
    }
}

/// start, stop, restart: one POST each.
struct AppAction: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "action", shouldDisplay: false)
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String

    static func run(_ action: String, app: String, client: ClientOptions) async throws {
        try await runClient {
            let api = try client.client()
            let data = try await api.request("POST", "api/v1/apps/\(app)/\(action)")
            if client.json { return printJSON(data) }
            let described = try api.decode(Schemas.App.self, data)
            printLine("\(app): \(described.state.rawValue) (desired \(described.desiredState.rawValue))")
        }
    }
}

struct AppStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start an app (from its checkpoint).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String
    func run() async throws { try await AppAction.run("start", app: app, client: client) }
}

struct AppStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop an app, after a last checkpoint.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String
    func run() async throws { try await AppAction.run("stop", app: app, client: client) }
}

struct AppRestart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restart", abstract: "Stop and start an app.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String
    func run() async throws { try await AppAction.run("restart", app: app, client: client) }
}

struct AppDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Stop an app and remove it with its grids.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String

    func run() async throws {
        try await runClient {
            _ = try await client.client().request("DELETE", "api/v1/apps/\(app)")
            if !client.json { printLine("deleted \(app)") }
        }
    }
}

struct AppLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "An app's log: the last lines, or -f to follow.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The app.") var app: String
    @Option(help: "How many recent lines.") var tail = 100
    @Flag(name: .shortAndLong, help: "Keep printing new lines until Ctrl-C.") var follow = false

    func run() async throws {
        try await runClient {
            let api = try client.client()
            func show(_ line: Schemas.LogLine) {
                printLine("\(cell(line.time)) \(line.source.rawValue) \(line.level): \(line.message)")
            }
            if follow {
                // One LogLine a line (NDJSON); --json passes each on as the server wrote it.
                try await api.stream("api/v1/apps/\(app)/logs", query: "tail=\(tail)&follow=true") { [json = client.json] data in
                    if json { return printLine(String(decoding: data, as: UTF8.self)) }
                    if let line = try? APIClient.decoder.decode(Schemas.LogLine.self, from: data) { show(line) }
                }
                return
            }
            let data = try await api.request("GET", "api/v1/apps/\(app)/logs", query: "tail=\(tail)")
            if client.json { return printJSON(data) }
            for line in try api.decode(Schemas.LogLines.self, data).lines { show(line) }
        }
    }
}

struct GridCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "grid", abstract: "Grids of the tenant's apps.", subcommands: [Get.self, GridWatch.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a grid: a table, --csv or --json.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The app.") var app: String
        @Argument(help: "The grid.") var grid: String
        @Flag(help: "CSV, as Excel reads it.") var csv = false

        func run() async throws {
            try await runClient {
                let api = try client.client()
                if csv {
                    let data = try await api.request("GET", "api/v1/apps/\(app)/grids/\(grid)", accept: "text/csv")
                    FileHandle.standardOutput.write(data)
                    return
                }
                let data = try await api.request("GET", "api/v1/apps/\(app)/grids/\(grid)")
                if client.json { return printJSON(data) }
                let grid = try api.decode(Schemas.Grid.self, data)
                let rows = grid.rows.additionalProperties
                printTable(
                    ["KEY"] + grid.columns.map { $0.uppercased() },
                    rows.keys.sorted().map { key in
                        [key] + grid.columns.map { cell(rows[key]?.additionalProperties[$0] ?? nil) }
                    })
            }
        }
    }
}

/// An app's directory as the zip the server takes: regular files and directories only,
/// paths relative to the directory, bytecode caches and hidden files left out.
enum BundleZip {
    static func make(directory: String) throws -> Data {
        let root = URL(fileURLWithPath: directory).standardizedFileURL
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent("app.toml").path) else {
            throw ValidationError("\(directory) has no app.toml: an app's directory needs one (name = \"…\")")
        }
        let archive: Archive
        do {
            archive = try Archive(data: Data(), accessMode: .create)
        } catch {
            throw ValidationError("cannot make a zip: \(error)")
        }
        let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isSymbolicLinkKey, .isRegularFileKey, .isDirectoryKey])
        while let url = enumerator?.nextObject() as? URL {
            let relative = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            if url.lastPathComponent.hasPrefix(".") || url.lastPathComponent == "__pycache__" {
                enumerator?.skipDescendants()
                continue
            }
            let values = try url.resourceValues(forKeys: [.isSymbolicLinkKey, .isRegularFileKey, .isDirectoryKey])
            if values.isSymbolicLink == true {
                throw ValidationError("\(relative) is a symlink; a bundle holds only regular files (copy what it points to)")
            }
            if values.isDirectory == true { continue }
            guard values.isRegularFile == true else { throw ValidationError("\(relative) is not a regular file") }
            try archive.addEntry(with: relative, relativeTo: root, compressionMethod: .deflate)
        }
        guard let data = archive.data else { throw ValidationError("cannot make a zip of \(directory)") }
        return data
    }
}

/// `--role` as ArgumentParser reads it: a tenant role of the API.
struct RoleOption: ExpressibleByArgument {
    let role: Schemas.TenantRole

    init(role: Schemas.TenantRole) {
        self.role = role
    }

    init?(argument: String) {
        guard let role = Schemas.TenantRole(rawValue: argument) else { return nil }
        self.role = role
    }

    var defaultValueDescription: String { role.rawValue }
    static var allValueStrings: [String] { Schemas.TenantRole.allCases.map(\.rawValue) }
}
