// SPDX-License-Identifier: Apache-2.0
import Foundation

/// One API answer (the admin API's, the control plane's): status, fields and body, serialized as HTTP/1.1.
///
/// Every answer has a body with its Content-Length (never chunked: bodies are built whole), JSON unless it is the
/// metrics exposition, and `Cache-Control: no-store`: an answer about the instance's state is stale at once, and
/// no proxy between an operator and the API should keep one.
public struct APIResponse: Sendable {
    public var status: Int
    public var fields: [(name: String, value: String)] = []
    public var body: [UInt8] = []
    /// Close the connection after this answer (a framing error, or the instance going away).
    public var closesConnection = false

    public init(status: Int, fields: [(name: String, value: String)] = [], body: [UInt8] = [], closesConnection: Bool = false) {
        self.status = status
        self.fields = fields
        self.body = body
        self.closesConnection = closesConnection
    }

    /// A JSON answer with snake_case keys, as `jesterctl --json` and the logs write them.
    public static func json(_ status: Int, _ value: some Encodable) -> APIResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let body = (try? encoder.encode(value)).map { Array($0) } ?? Array("{}".utf8)
        return APIResponse(status: status, fields: [("Content-Type", "application/json")], body: body)
    }

    /// JSON that is already encoded (the routes graph renders its own).
    public static func json(_ status: Int, raw: [UInt8]) -> APIResponse {
        APIResponse(status: status, fields: [("Content-Type", "application/json")], body: raw)
    }

    /// An error: `{"status": 404, "error": "Not Found", "message": "..."}`, the same shape for every failure so
    /// a client reads one.
    public static func error(_ status: Int, _ message: String) -> APIResponse {
        json(status, ErrorBody(status: status, error: reasonPhrase(status), message: message))
    }

    /// The body of every error answer (`Error` in Docs/admin-openapi.yaml).
    public struct ErrorBody: Encodable {
        public var status: Int
        public var error: String
        public var message: String
    }

    /// The bytes on the wire. `keepAlive` false adds `Connection: close` (RFC 9112 §9.6).
    public func serialized(keepAlive: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\n"
        for field in fields { head += "\(field.name): \(field.value)\r\n" }
        // RFC 9110 §8.6: no Content-Length on 304 beyond the representation's; none here, and no body.
        if status != 304 { head += "Content-Length: \(body.count)\r\n" }
        head += "Cache-Control: no-store\r\n"
        if !keepAlive || closesConnection { head += "Connection: close\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (status == 304 ? [] : body)
    }

    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 422: return "Unprocessable Content"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }
}
