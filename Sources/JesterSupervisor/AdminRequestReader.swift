// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// One admin API request, read whole: the API's bodies are small, so nothing streams.
struct AdminRequest: Sendable, Equatable {
    var method: String
    /// The path as received (percent-encoded), without the query.
    var path: String
    /// Header fields with lowercased names, in arrival order.
    var fields: [(name: String, value: String)]
    var body: [UInt8]
    /// Whether the connection may carry another request (RFC 9112 §9.3).
    var keepAlive: Bool

    /// The value of the one field called `name` (lowercase); nil when absent.
    func field(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    static func == (lhs: AdminRequest, rhs: AdminRequest) -> Bool {
        lhs.method == rhs.method && lhs.path == rhs.path && lhs.body == rhs.body && lhs.keepAlive == rhs.keepAlive
            && lhs.fields.map(\.name) == rhs.fields.map(\.name) && lhs.fields.map(\.value) == rhs.fields.map(\.value)
    }
}

/// Turns the bytes of an admin connection into requests, with the data plane's strict head parser (a looser
/// parser on the port that can drain the instance would be the weakest door in it).
///
/// Pure: the connection appends what it reads and asks for the next request once it has answered the last, so
/// pipelined requests are answered in order. A refusal ends the connection: after a framing error the next
/// request's start cannot be found.
struct AdminRequestReader {
    /// The largest request body read; the API's actions take none, so this is generous.
    static let maxBodySize = 64 * 1024

    /// What the bytes so far make.
    enum Next: Equatable {
        case request(AdminRequest)
        case needMoreBytes
        /// Answer with this status and message, then close.
        case refuse(status: Int, message: String)
    }

    private var buffer: [UInt8] = []
    private var parser = HTTPHeadParser(limits: .init(maxHeadSize: 16 * 1024, maxURILength: 4096, maxFieldCount: 64))

    /// Bytes received.
    mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet part of an answered request.
    var bufferedBytes: Int { buffer.count }

    /// The next complete request, if the bytes hold one.
    mutating func next() -> Next {
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
            let bodyLength = Int(head.contentLength ?? 0)
            guard bodyLength <= Self.maxBodySize else {
                return .refuse(status: 413, message: "request bodies are limited to \(Self.maxBodySize) bytes")
            }
            guard buffer.count >= length + bodyLength else { return .needMoreBytes }
            let request = AdminRequest(
                method: text(head.method), path: text(head.path),
                fields: head.fields.map { (text($0.name).lowercased(), text($0.value)) },
                body: Array(buffer[length..<(length + bodyLength)]), keepAlive: head.isPersistent)
            buffer.removeFirst(length + bodyLength)
            parser.reset()
            return .request(request)
        }
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: buffer[range], as: UTF8.self)
    }
}
