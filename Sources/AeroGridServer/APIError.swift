public import AeroGridAPI
import Foundation
public import Hummingbird

/// An API error: `{"error": {"code", "message"}}` with its status. The codes are those
/// openapi.json lists.
public struct APIError: HTTPResponseError, Sendable {
    public typealias Code = Schemas._Error._ErrorPayload.CodePayload
    public let status: HTTPResponse.Status
    public let code: Code
    public let message: String

    public init(_ status: HTTPResponse.Status, _ code: Code, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, .badRequest, message) }
    static func unauthorized(_ message: String) -> APIError { APIError(.unauthorized, .unauthorized, message) }
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, .forbidden, message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, .notFound, message) }
    static func conflict(_ message: String) -> APIError { APIError(.conflict, .conflict, message) }
    static func tooLarge(_ message: String) -> APIError { APIError(.contentTooLarge, .tooLarge, message) }
    static func overQuota(_ message: String) -> APIError { APIError(.forbidden, .overQuota, message) }
    static func invalidBundle(_ message: String) -> APIError { APIError(.unprocessableContent, .invalidBundle, message) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = JSONResponse.make(bytes: APIJSON.encode(Schemas._Error(error: .init(code: code, message: message))), status: status)
        if status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
        return response
    }
}

/// Turns every error into the API's JSON shape: Hummingbird's own (404 for an unknown
/// route, 405, a body over the limit) and unexpected ones, logged and answered 500.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let code: APIError.Code =
                switch error.status {
                case .notFound: .notFound
                case .methodNotAllowed: .methodNotAllowed
                case .contentTooLarge: .tooLarge
                case .unauthorized: .unauthorized
                case .forbidden: .forbidden
                default: error.status.code >= 500 ? ._internal : .badRequest
                }
            let message = error.body ?? (error.status == .notFound ? "no such route: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            throw APIError(error.status, code, message)
        } catch {
            context.logger.error("unexpected error on \(request.method) \(request.uri.path): \(error)")
            throw APIError(.internalServerError, ._internal, "the server failed on this request; its log has the details")
        }
    }
}

/// JSON bodies already written (APIJSON, or JSONWriter for grid cells).
enum JSONResponse {
    static func make(bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
