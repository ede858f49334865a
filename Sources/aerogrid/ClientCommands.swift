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
                var body: [String: Any] = ["name": name]
                if let topics { body["topics"] = topics.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
                let data = try await client.client().request("POST", "api/v1/tenants", json: body)
                if client.json { return printJSON(data) }
                let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let token = object["admin_token"] as? [String: Any] ?? [:]
                printLine("created tenant \(name)")
                printLine("admin token (shown once): \(cell(token["secret"]))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runClient {
                let data = try await client.client().request("GET", "api/v1/tenants")
                if client.json { return printJSON(data) }
                let tenants = (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["tenants"] as? [[String: Any]] ?? []
                printTable(["NAME", "APPS", "CREATED"], tenants.map { [cell($0["name"]), cell($0["apps"]), cell($0["created_at"])] })
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
        @Option(help: "admin, developer or viewer.") var role: String = "developer"

        func run() async throws {
            try await runClient {
                let data = try await client.client().request("POST", "api/v1/tokens", json: ["name": name, "role": role])
                if client.json { return printJSON(data) }
                let token = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                printLine("created token \(cell(token["id"])) (\(role))")
                printLine("secret (shown once): \(cell(token["secret"]))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tenant's tokens (never their secrets).")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runClient {
                let data = try await client.client().request("GET", "api/v1/tokens")
                if client.json { return printJSON(data) }
                let tokens = (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["tokens"] as? [[String: Any]] ?? []
                printTable(["ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"], tokens.map {
                    [cell($0["id"]), cell($0["name"]), cell($0["role"]), cell($0["created_at"]), cell($0["last_used_at"]), cell($0["revoked_at"])]
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
                let path = app.map { "api/v1/tenants/\(tenant)/apps/\($0)/quota" } ?? "api/v1/tenants/\(tenant)/quota"
                let data = try await client.client().request("GET", path)
                if client.json { return printJSON(data) }
                printQuota(try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:])
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
                var body: [String: Any] = [:]
                if let memory, let bytes = parseSize(memory) { body["memory_bytes"] = Int(bytes) }
                if let cpus { body["cpus"] = cpus }
                if let pids { body["pids"] = pids }
                if let gridRows { body["grid_rows"] = gridRows }
                if let maxApps { body["max_apps"] = maxApps }
                if let maxConnections { body["max_connections"] = maxConnections }
                if let maxSubscriptions { body["max_subscriptions"] = maxSubscriptions }
                guard !body.isEmpty else { throw ValidationError("nothing to set: give --memory, --cpus, … (see --help)") }
                let path = app.map { "api/v1/tenants/\(tenant)/apps/\($0)/quota" } ?? "api/v1/tenants/\(tenant)/quota"
                let data = try await client.client().request("PUT", path, json: body)
                if client.json { return printJSON(data) }
                printQuota(try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:])
            }
        }
    }
}

private func printQuota(_ quota: [String: Any]) {
    let used = quota["used"] as? [String: Any]
    printTable(["QUOTA", "LIMIT", "USED"], quota.keys.filter { $0 != "used" }.sorted().map { key in
        let usedKey = key == "max_apps" ? "apps" : key
        return [key, cell(quota[key]), used.map { cell($0[usedKey]) } ?? "-"]
    })
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
                let data = try await client.client().request("GET", "api/v1/tenants/\(tenant)/acl")
                if client.json { return printJSON(data) }
                for rule in (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["topics"] as? [String] ?? [] { printLine(rule) }
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
                let data = try await client.client().request("PUT", "api/v1/tenants/\(tenant)/acl", json: ["topics": rules])
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
            let data = try await client.client().request(
                "POST", "api/v1/apps", body: zip, contentType: "application/zip",
                progress: { sent, total in
                    guard !quiet, total > 0 else { return }
                    FileHandle.standardError.write(Data("\ruploading \(name): \(sent * 100 / total)% of \(total) bytes".utf8))
                })
            if !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
            if client.json { return printJSON(data) }
            let app = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            printLine("deployed \(cell(app["name"])) version \(cell(app["version"])) (\(cell(app["state"])), desired \(cell(app["desired_state"])))")
        }
    }
}

struct AppList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the tenant's apps.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runClient {
            let data = try await client.client().request("GET", "api/v1/apps")
            if client.json { return printJSON(data) }
            let apps = (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["apps"] as? [[String: Any]] ?? []
            printTable(["NAME", "VERSION", "STATE", "DESIRED", "RESTARTS", "RECORDS", "LAG"], apps.map {
                [cell($0["name"]), cell($0["version"]), cell($0["state"]), cell($0["desired_state"]), cell($0["restarts"]),
                 cell($0["records"]), cell($0["lag"])]
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
            let data = try await client.client().request("GET", "api/v1/apps/\(app)")
            if client.json { return printJSON(data) }
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            let keys = ["name", "version", "state", "desired_state", "crash_reason", "last_crash", "restarts", "records", "lag",
                        "usage", "quota", "bundle_digest", "updated_at"]
            printTable(["FIELD", "VALUE"], keys.map { [$0, cell(object[$0])] })
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
            let data = try await client.client().request("POST", "api/v1/apps/\(app)/\(action)")
            if client.json { return printJSON(data) }
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            printLine("\(app): \(cell(object["state"])) (desired \(cell(object["desired_state"])))")
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
            let json = client.json
            func show(_ line: [String: Any]) {
                if json {
                    let data = (try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
                    printLine(String(decoding: data, as: UTF8.self))
                } else {
                    printLine("\(cell(line["time"])) \(cell(line["source"])) \(cell(line["level"])): \(cell(line["message"]))")
                }
            }
            if follow {
                try await api.stream("api/v1/apps/\(app)/logs", query: "tail=\(tail)&follow=true") { data in
                    if let line = try? JSONSerialization.jsonObject(with: data) as? [String: Any] { show(line) }
                }
                return
            }
            let object = try await api.object("GET", "api/v1/apps/\(app)/logs", query: "tail=\(tail)")
            for line in object["lines"] as? [[String: Any]] ?? [] { show(line) }
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
                let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let columns = object["columns"] as? [String] ?? []
                let rows = object["rows"] as? [String: [String: Any]] ?? [:]
                printTable(["KEY"] + columns.map { $0.uppercased() }, rows.keys.sorted().map { key in
                    [key] + columns.map { cell(rows[key]?[$0]) }
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
