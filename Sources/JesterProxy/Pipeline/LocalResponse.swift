// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// An answer Jester gives itself instead of an upstream's: an error, a filter's refusal (401 with
/// `WWW-Authenticate`, 429 with `Retry-After`), a policy's short-circuit.
///
/// Protocol-free on purpose: the exchange decides *what* to answer, and each protocol adapter renders it in its own
/// framing (an HTTP/1.1 status line and fields, HTTP/2 or HTTP/3 header fields). `Content-Length` and the
/// connection's persistence are the adapter's to add, never the filter's.
struct LocalResponse {
    /// A response field; names as a filter writes them (HTTP/2 adapters lowercase them).
    struct Field: Equatable {
        var name: String
        var value: String

        init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    var status: Int
    var fields: [Field]
    var body: ByteBuffer
    /// Made by `error`: the route's error pages (`RequestExchange.errorPage(replacing:)`) may give it their body.
    var isPlainError = false

    init(status: Int, fields: [Field] = [], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.fields = fields
        self.body = body
    }

    /// The short plain-text error every protocol answers with: the status and its reason, nothing about
    /// upstreams or internals. `fields` are the caller's extras (`Retry-After`, `WWW-Authenticate`).
    static func error(_ status: Int, fields: [Field] = []) -> LocalResponse {
        var response = LocalResponse(
            status: status, fields: [Field("Content-Type", "text/plain; charset=utf-8")] + fields,
            body: ByteBuffer(string: "\(status) \(HTTPStatus.reason(status))\n"))
        response.isPlainError = true
        return response
    }
}
