// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// One request to an HTTP API of Jester's (the admin API, the control plane's REST API), read whole: bodies are
/// bounded (`APIRequestReader.maxBodySize`), so nothing streams.
public struct APIRequest: Sendable, Equatable {
    public var method: String
    /// The path as received (percent-encoded), without the query.
    public var path: String
    /// The query as received (percent-encoded), without its `?`; empty when there is none.
    public var query: String
    /// Header fields with lowercased names, in arrival order.
    public var fields: [(name: String, value: String)]
    public var body: [UInt8]
    /// Whether the connection may carry another request (RFC 9112 §9.3).
    public var keepAlive: Bool

    public init(
        method: String, path: String, query: String = "", fields: [(name: String, value: String)], body: [UInt8],
        keepAlive: Bool
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.fields = fields
        self.body = body
        self.keepAlive = keepAlive
    }

    /// The value of the one field called `name` (lowercase); nil when absent.
    public func field(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    public static func == (lhs: APIRequest, rhs: APIRequest) -> Bool {
        lhs.method == rhs.method && lhs.path == rhs.path && lhs.query == rhs.query && lhs.body == rhs.body && lhs.keepAlive == rhs.keepAlive
            && lhs.fields.map(\.name) == rhs.fields.map(\.name) && lhs.fields.map(\.value) == rhs.fields.map(\.value)
    }
}

/// Turns the bytes of an API connection into requests, with the data plane's strict head parser (a looser
/// parser on the port that can drain the instance would be the weakest door in it).
///
/// Pure: the connection appends what it reads and asks for the next request once it has answered the last, so
/// pipelined requests are answered in order. A refusal ends the connection: after a framing error the next
/// request's start cannot be found.
public struct APIRequestReader {
    /// The admin API's largest request body: its actions take small ones, so this is generous.
    public static let defaultMaxBodySize = 64 * 1024

    /// The largest request body read (the control plane's whole snapshots are larger than the admin API's bodies).
    public let maxBodySize: Int
    /// A smaller limit for some requests, decided from the head before any of the body is buffered (the control
    /// plane takes large bodies only from clients with a write token). Nil: `maxBodySize` for every request.
    public var bodyLimit: (@Sendable (_ method: String, _ fields: [(name: String, value: String)]) -> Int)?

    /// What the bytes so far make.
    public enum Next: Equatable {
        case request(APIRequest)
        case needMoreBytes
        /// Answer with this status and message, then close.
        case refuse(status: Int, message: String)
    }

    private var buffer: [UInt8] = []
    public init(maxBodySize: Int = Self.defaultMaxBodySize) {
        self.maxBodySize = maxBodySize
    }

    private var parser = HTTPHeadParser(limits: .init(maxHeadSize: 16 * 1024, maxURILength: 4096, maxFieldCount: 64))

    /// Bytes received.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet part of an answered request.
    public var bufferedBytes: Int { buffer.count }

    /// The next complete request, if the bytes hold one.
    public mutating func next() -> Next {
        let progress = buffer.withUnsafeBytes { parser.findEnd($0, isRequest: true) }
        switch progress {
        case .needMoreBytes:
            return .needMoreBytes
        case .failed(let error):
            return .refuse(status: error.status, message: error.reason)
        case .complete(let length):
            var head = HTTPHead()
            let failure = buffer.withUnsafeBytes { parser.parseRequest(UnsafeRawBufferPointer(rebasing: $0[..<length]),
                into: &head) }
            if let failure { return .refuse(status: failure.status, message: failure.reason) }
            if head.isChunked {
                return .refuse(status: 411, message: "send a Content-Length: chunked request bodies are not read here")
            }
            let method = text(head.method)
            let fields = head.fields.map { (name: text($0.name).lowercased(), value: text($0.value)) }
            let limit = min(maxBodySize, bodyLimit?(method, fields) ?? maxBodySize)
            let bodyLength = Int(head.contentLength ?? 0)
            guard bodyLength <= limit else {
                return .refuse(status: 413, message: "request bodies are limited to \(limit) bytes here")
            }
            guard buffer.count >= length + bodyLength else { return .needMoreBytes }
            let request = APIRequest(
                method: method, path: text(head.path), query: Self.query(of: text(head.target)), fields: fields,
                body: Array(buffer[length..<(length + bodyLength)]), keepAlive: head.isPersistent)
            buffer.removeFirst(length + bodyLength)
            parser.reset()
            return .request(request)
        }
    }

    /// What follows the first `?` of a request target.
    static func query(of target: String) -> String {
        guard let mark = target.firstIndex(of: "?") else { return "" }
        return String(target[target.index(after: mark)...])
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: buffer[range], as: UTF8.self)
    }
}
