// SPDX-License-Identifier: Apache-2.0
import JesterCore

extension CacheFields {
    /// The end-to-end fields of a parsed head (JesterCore's `HTTPHead` over its bytes): hop-by-hop ones, and
    /// those `Connection` named, are left out (RFC 9110 §7.6.1), since neither a key nor a stored response may
    /// depend on one connection's fields. HTTP/2 and HTTP/3 requests reach the exchange translated to the same
    /// head, so this is the one way in for every protocol.
    public init(head: HTTPHead, bytes: UnsafeRawBufferPointer) {
        self.init(
            head.fields.filter { !$0.isHopByHop }.map {
                Field(
                    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0.name]), as: UTF8.self),
                    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0.value]), as: UTF8.self))
            })
    }
}

extension CacheRequest {
    /// The request a parsed head describes. `scheme` is what the client spoke to Jester; `authority` defaults to
    /// an absolute-form target's, else the `Host` field's (pass the one the route matched when it differs).
    /// A length above zero or chunked framing is a body (`hasBody`).
    public init(head: HTTPHead, bytes: UnsafeRawBufferPointer, scheme: String, authority: String? = nil) {
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        let fields = CacheFields(head: head, bytes: bytes)
        let host: String
        if let authority {
            host = authority
        } else if !head.absoluteAuthority.isEmpty {
            host = text(head.absoluteAuthority)
        } else {
            host = head.hostField.map { text(head.fields[$0].value) } ?? ""
        }
        // The path and query of an origin-form or absolute-form target (absolute-form's authority left out; its
        // path may be empty, which the key reads as "/").
        let target = text(head.path.lowerBound..<head.target.upperBound)
        self.init(
            method: text(head.method), scheme: scheme, authority: host, target: target, fields: fields,
            hasBody: (head.contentLength ?? 0) > 0 || head.isChunked)
    }
}
