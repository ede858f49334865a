import AeroGridAPI
import AeroGridCore
import AeroGridStore
import Foundation
import Hummingbird

/// A body of the API's JSON (APIJSON: keys sorted, nil written as null).
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    JSONResponse.make(bytes: APIJSON.encode(value), status: status)
}

/// Reading request bodies: bounded in bytes and in time before anything is decoded.
struct RequestBodies: Sendable {
    /// How long a request body may take to arrive.
    let timeout: Duration
    /// A JSON body is at most this many bytes.
    static let jsonLimit = 64 << 10

    /// The request's body, at most `limit` bytes and within the body timeout.
    func collect(_ request: Request, upTo limit: Int, what: String) async throws -> ByteBuffer {
        let timeout = timeout
        return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask { [request] in
                var request = request
                do {
                    return try await request.collectBody(upTo: limit)
                } catch {
                    throw APIError.tooLarge("\(what) is larger than \(limit) bytes, the limit")
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let body = first else {
                throw APIError(.requestTimeout, .timeout, "\(what) did not arrive within \(timeout)")
            }
            return body
        }
    }

    /// The request's JSON body as `type` (a schema of openapi.json).
    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let body = try await collect(request, upTo: Self.jsonLimit, what: "the body")
        do {
            return try APIJSON.decode(type, from: body.readableBytesView)
        } catch {
            throw APIError.badRequest(error.message)
        }
    }
}

/// Audit entries for what a caller did: kept in this node's store and, on a node of a
/// cluster, sent to the cluster's audit topic, which every node reads.
struct Auditor: Sendable {
    let store: Store
    var topic: AuditTopic? = nil

    /// An entry for the caller's own tenant.
    func record(_ principal: Principal, _ action: String, target: String, _ context: APIContext, outcome: String = "ok") async throws {
        try await keep(tenant: principal.tenant, tenantID: principal.tenantID, principal, action, target, context, outcome)
    }

    /// An entry about `tenant` (an operator's action on it).
    func record(
        _ principal: Principal, tenant: TenantRecord, _ action: String, target: String, _ context: APIContext,
        outcome: String = "ok"
    ) async throws {
        try await keep(tenant: tenant.name, tenantID: tenant.id, principal, action, target, context, outcome)
    }

    private func keep(
        tenant: String?, tenantID: String?, _ principal: Principal, _ action: String, _ target: String, _ context: APIContext, _ outcome: String
    ) async throws {
        let entry = Store.AuditRecord(
            entryID: RandomID.make(prefix: "aud_"), time: Date(), tenant: tenant, tenantID: tenantID, actor: principal.tokenID, action: action,
            target: target, source: context.source, outcome: outcome)
        try await store.audit(
            tenant: entry.tenant, tenantID: entry.tenantID, actor: entry.actor, action: entry.action, target: entry.target, source: entry.source,
            outcome: entry.outcome, at: entry.time, entryID: entry.entryID)
        await topic?.publish(entry)
    }
}

extension Request {
    /// A whole-number query parameter within `range`, or `value` when absent.
    func queryInt(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = uri.queryParameters[Substring(name)] else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw APIError.badRequest("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), not '\(String(text).cut(toBytes: 64))'")
        }
        return number
    }

    /// A true/false query parameter, false when absent.
    func queryBool(_ name: String) throws -> Bool {
        guard let text = uri.queryParameters[Substring(name)] else { return false }
        switch text {
        case "true", "1": return true
        case "false", "0": return false
        default: throw APIError.badRequest("\(name) must be true or false, not '\(String(text).cut(toBytes: 64))'")
        }
    }
}

/// A retried request whose first attempt made a secret (shown once, never stored) cannot be
/// answered again: the caller learns that the write was made, and how to get a new secret.
func refuseRepeated(_ outcome: ControlOutcome, what: String) throws {
    guard outcome.repeated else { return }
    throw APIError.conflict(
        "this Idempotency-Key's request was applied before and made \(what); the secret was in that first answer only. If it was lost, revoke the token and make another (an operator can give a tenant a new admin token)"
    )
}

/// `name` when it is a valid resource name, else a refusal saying why.
func validName(_ name: String, kind: String) throws -> String {
    if let problem = ResourceName.problem(with: name) { throw APIError.badRequest("\(kind) '\(name.cut(toBytes: 64))' is not valid: \(problem)") }
    return name
}
