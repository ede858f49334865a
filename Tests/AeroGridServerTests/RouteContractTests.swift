import AeroGridAPI
import AeroGridKafka
import AeroGridRuntime
import AeroGridSandbox
import AeroGridStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

@testable import AeroGridServer

private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The served API against its OpenAPI document, in process (no root, no Kafka): every
/// documented operation called by every kind of caller answers only statuses the document
/// lists, refuses exactly the roles its `x-roles` leaves out, and every JSON body it answers
/// matches the document's schema for that status.
@Suite struct RouteContractTests {
    /// The document, read the way a client reads it (a tree of Foundation values, only read).
    struct Document: @unchecked Sendable {
        let object: [String: Any]
        var paths: [String: [String: Any]] { object["paths"] as! [String: [String: Any]] }
        var schemas: [String: Any] { (object["components"] as! [String: Any])["schemas"] as! [String: Any] }

        struct Operation {
            let method: String
            let path: String
            let roles: [String]?
            let statuses: [String: Any]
        }

        var operations: [Operation] {
            paths.flatMap { path, operations in
                operations.compactMap { method, value -> Operation? in
                    guard ["get", "post", "put", "delete"].contains(method), let operation = value as? [String: Any] else { return nil }
                    return Operation(
                        method: method.uppercased(), path: path, roles: operation["x-roles"] as? [String],
                        statuses: operation["responses"] as! [String: Any])
                }
            }
            // Deleting the tenant (which revokes its tokens) last.
            .sorted {
                ($0.method == "DELETE" && $0.path.hasSuffix("{tenant}") ? 1 : 0, $0.path, $0.method)
                    < ($1.method == "DELETE" && $1.path.hasSuffix("{tenant}") ? 1 : 0, $1.path, $1.method)
            }
        }

        /// A JSON number as Foundation parsed it (true and false are not numbers).
        static func number(_ value: Any) -> Double? {
            if isBool(value) { return nil }
            if let whole = value as? Int { return Double(whole) }
            if let number = value as? Double { return number }
            return (value as? NSNumber)?.doubleValue
        }

        /// Foundation parses true and false as numbers of their own type code (and 0 and 1
        /// would pass `is Bool`).
        static func isBool(_ value: Any) -> Bool {
            if let number = value as? NSNumber { return ["c", "B"].contains(String(cString: number.objCType)) }
            return value is Bool
        }

        /// Why `value` does not match `schema`, or nil when it does (the parts of JSON Schema
        /// the document uses: type, nullable, enum, required, properties, additionalProperties,
        /// items, anyOf, oneOf, $ref).
        func problem(_ value: Any, _ schema: [String: Any], at path: String) -> String? {
            if let reference = schema["$ref"] as? String {
                return problem(value, schemas[String(reference.split(separator: "/").last!)] as! [String: Any], at: path)
            }
            if value is NSNull {
                if schema["nullable"] as? Bool == true { return nil }
                if let options = (schema["anyOf"] ?? schema["oneOf"]) as? [[String: Any]],
                    options.contains(where: { problem(value, $0, at: path) == nil })
                {
                    return nil
                }
                return "\(path) is null, which its schema does not allow"
            }
            if let options = (schema["anyOf"] ?? schema["oneOf"]) as? [[String: Any]] {
                return options.contains { problem(value, $0, at: path) == nil } ? nil : "\(path) matches none of its schema's options"
            }
            if let allowed = schema["enum"] as? [Any], !allowed.contains(where: { "\($0)" == "\(value)" }) {
                return "\(path) is \(value), not one of \(allowed)"
            }
            switch schema["type"] as? String {
            case "object":
                guard let object = value as? [String: Any] else { return "\(path) is not an object" }
                let properties = schema["properties"] as? [String: [String: Any]] ?? [:]
                for key in schema["required"] as? [String] ?? [] where object[key] == nil { return "\(path).\(key) is missing" }
                for (key, member) in object {
                    if let property = properties[key] {
                        if let found = problem(member, property, at: "\(path).\(key)") { return found }
                    } else if let additional = schema["additionalProperties"] as? [String: Any] {
                        if let found = problem(member, additional, at: "\(path).\(key)") { return found }
                    } else if schema["additionalProperties"] as? Bool == false || !properties.isEmpty {
                        return "\(path).\(key) is not in the document"
                    }
                }
                return nil
            case "array":
                guard let items = value as? [Any] else { return "\(path) is not a list" }
                let item = schema["items"] as? [String: Any] ?? [:]
                for (index, element) in items.enumerated() {
                    if let found = problem(element, item, at: "\(path)[\(index)]") { return found }
                }
                return nil
            case "string": return value is String ? nil : "\(path) is not a string"
            case "integer":
                guard let number = Self.number(value), number.rounded() == number else { return "\(path) is not a whole number" }
                return nil
            case "number": return Self.number(value) != nil ? nil : "\(path) is not a number"
            case "boolean": return Self.isBool(value) ? nil : "\(path) is not true or false"
            default: return nil
            }
        }
    }

    /// A server in a temporary folder: a tenant `acme` with a token of each role, and an
    /// operator token.
    struct Fixture {
        let router: Router<APIContext>
        let tokens: [String: String]
        let directory: String

        static func make() async throws -> Fixture {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("aerogrid-contract-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = try Store(path: "\(directory)/aerogrid.sqlite")
            let bundles = try BundleStore(directory: "\(directory)/bundles")
            let defaults = RuntimeDefaults(
                kafka: KafkaConfiguration(bootstrapServers: "127.0.0.1:9"),
                profile: try CompiledProfile.load(path: "\(repository)/sandbox-profiles/python.json"), sdkPath: "\(repository)/python")
            let supervisor = AppSupervisor(store: store, bundles: bundles, defaults: defaults, logger: Logger(label: "test"))
            let planner = AppPlanner(store: store, appDefaults: AppQuota(memoryBytes: 256 << 20, cpus: 0.5, pids: 64, gridRows: 100_000))
            let writes = ControlWrites(store: store)
            let apps = AppService(writes: writes, bundles: bundles, supervisor: supervisor, planner: planner)
            let router = APIRouter(apps: apps, metrics: ServerMetrics()) { nil }.makeRouter()
            var tokens: [String: String] = [:]
            let (operatorRow, operatorSecret) = TokenSecret.issue(tenant: nil, name: "operator", role: .operator)
            try await writes.submit(.createToken(.init(operatorRow)))
            tokens["operator"] = operatorSecret
            let (adminRow, adminSecret) = TokenSecret.issue(tenant: "acme", name: "admin", role: .admin)
            let acme = ControlChange.CreateTenant(
                tenantId: TenantRecord.newID(), name: "acme", topics: nil, hostUids: .init(low: 900_000_000, high: 900_099_999), token: .init(adminRow))
            try await writes.submit(.createTenant(acme))
            tokens["admin"] = adminSecret
            for role in [Role.developer, .viewer] {
                let (row, secret) = TokenSecret.issue(tenant: "acme", name: role.rawValue, role: role)
                try await writes.submit(.createToken(.init(row)))
                tokens[role.rawValue] = secret
            }
            return Fixture(router: router, tokens: tokens, directory: directory)
        }
    }

    /// A body each operation can read (refused or not, it gets past the parsing).
    static func body(for operation: Document.Operation) -> ByteBuffer? {
        switch (operation.method, operation.path) {
        case ("POST", "/api/v1/tenants"): ByteBuffer(string: #"{"name":"other"}"#)
        case ("POST", "/api/v1/tokens"): ByteBuffer(string: #"{"name":"ci","role":"viewer"}"#)
        case ("PUT", "/api/v1/tenants/{tenant}/quota"): ByteBuffer(string: #"{"max_apps":5,"cpus":null}"#)
        case ("PUT", "/api/v1/tenants/{tenant}/apps/{app}/quota"): ByteBuffer(string: #"{"pids":32}"#)
        case ("PUT", "/api/v1/tenants/{tenant}/acl"): ByteBuffer(string: #"{"topics":["acme.*"]}"#)
        // Not a zip: refused (422) after the role check, without writing a bundle.
        case ("POST", "/api/v1/apps"): ByteBuffer(string: "not a zip")
        default: nil
        }
    }

    @Test func everyOperationAnswersWhatTheDocumentSaysToEveryCaller() async throws {
        let document = Document(object: try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.bytes)) as! [String: Any])
        let fixture = try await Fixture.make()
        defer { try? FileManager.default.removeItem(atPath: fixture.directory) }
        let app = Application(router: fixture.router)
        let tokens = fixture.tokens
        let checked = Atomic<Int>(0)
        try await app.test(.router) { client in
            for operation in document.operations where operation.path != StreamGateway.path {
                // The tenant's own names; the app and grid do not exist (404 for an allowed caller).
                let uri = operation.path.replacingOccurrences(of: "{tenant}", with: "acme").replacingOccurrences(of: "{app}", with: "ordersapp")
                    .replacingOccurrences(of: "{grid}", with: "orders").replacingOccurrences(of: "{id}", with: "tok_none")
                let method = HTTPRequest.Method(operation.method)!
                // Callers that only read run first: the writes (a delete) then cannot hide a refusal.
                for caller in ["none", "viewer", "developer", "admin", "operator"] {
                    var headers: HTTPFields = [.contentType: operation.path == "/api/v1/apps" ? "application/zip" : "application/json"]
                    if let secret = tokens[caller] { headers[.authorization] = "Bearer \(secret)" }
                    let what = "\(operation.method) \(operation.path) as \(caller)"
                    try await client.execute(uri: uri, method: method, headers: headers, body: Self.body(for: operation)) { response in
                        let status = String(response.status.code)
                        checked.add(1, ordering: .relaxed)
                        #expect(operation.statuses[status] != nil, "\(what): \(status) is not among the documented \(operation.statuses.keys.sorted())")
                        if let roles = operation.roles {
                            if caller == "none" {
                                #expect(response.status == .unauthorized, "\(what): \(status)")
                            } else if roles.contains(caller) {
                                #expect(
                                    response.status != .unauthorized && response.status != .forbidden
                                        || (response.status == .forbidden && Self.isQuotaRefusal(response)),
                                    "\(what): \(status) \(String(buffer: response.body))")
                            } else {
                                #expect(response.status == .forbidden, "\(what): \(status) where x-roles is \(roles)")
                            }
                        }
                        guard let content = (operation.statuses[status] as? [String: Any])?["content"] as? [String: Any],
                            response.headers[.contentType]?.hasPrefix("application/json") == true,
                            let json = content["application/json"] as? [String: Any], let schema = json["schema"] as? [String: Any]
                        else { return }
                        let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body), options: [.fragmentsAllowed])
                        #expect(document.problem(body, schema, at: "body") == nil, "\(what): \(status): \(document.problem(body, schema, at: "body") ?? "")")
                    }
                }
            }
        }
        #expect(checked.load(ordering: .relaxed) >= 150, "only \(checked.load(ordering: .relaxed)) calls were checked")
    }

    static func isQuotaRefusal(_ response: TestResponse) -> Bool {
        String(buffer: response.body).contains("\"over_quota\"")
    }

    /// The bodies the API writes have every property, null where there is no value: the
    /// generated types alone would leave a nil out (swift-openapi-generator issue 934).
    @Test func aNilIsWrittenAsNull() throws {
        let app = Schemas.App(
            name: "a", version: 1, bundleDigest: String(repeating: "0", count: 64), entrypoint: "app.py", runtime: "python3.11",
            desiredState: .stopped, state: .created, restarts: 0, records: 0,
            quota: .init(memoryBytes: 1, cpus: 0.5, pids: 1, gridRows: 1), createdAt: Date(timeIntervalSince1970: 0),
            updatedAt: Date(timeIntervalSince1970: 86_400))
        let text = String(decoding: APIJSON.encode(app), as: UTF8.self)
        #expect(text.contains(#""crash_reason":null"#) && text.contains(#""lag":null"#) && text.contains(#""usage":null"#), "\(text)")
        #expect(text.contains(#""created_at":"1970-01-01T00:00:00Z""#) && text.contains(#""updated_at":"1970-01-02T00:00:00Z""#), "\(text)")
        #expect(text.contains(#""cpus":0.5"#))
        let keys = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]).keys.sorted()
        #expect(keys.count == 17)
        #expect(text.contains(#""node":null"#))
        // Keys in order, as JSONSerialization's sortedKeys wrote them before.
        let offsets = keys.map { key in text.range(of: "\"\(key)\":").map { text.distance(from: text.startIndex, to: $0.lowerBound) } ?? -1 }
        #expect(offsets == offsets.sorted() && !offsets.contains(-1), "\(text)")
        #expect(text.hasPrefix(#"{"bundle_digest":"#))
    }

    /// A body that does not fit its schema is refused with where and what to fix.
    @Test(arguments: [
        (#"{"name":5}"#, #""name" must be a string"#),
        (#"{}"#, #""name" is required"#),
        (#"[1]"#, "must be a JSON object"),
        (#"{"name":"x","topics":[1]}"#, #""topics.0" must be a string"#),
    ])
    func aBodyThatDoesNotFitItsSchemaSaysWhatToFix(body: String, message: String) throws {
        #expect(throws: BodyError.self) { try APIJSON.decode(Schemas.CreateTenant.self, from: Array(body.utf8)) }
        do {
            _ = try APIJSON.decode(Schemas.CreateTenant.self, from: Array(body.utf8))
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}
