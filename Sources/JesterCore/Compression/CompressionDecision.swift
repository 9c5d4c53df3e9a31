// SPDX-License-Identifier: Apache-2.0
/// Whether one response is compressed, and how its fields change: the rules of RFC 9110 §8.4 and §12.5.3 with a
/// route's `CompressionPolicy`, as a value the adapters carry out.
///
/// Pure: the response's fields come in as text, the request's as its method and `AcceptEncoding`, and the answer is
/// an outcome plus field edits. It is decided once per response, when its head arrives from upstream.
///
/// Which responses are left alone, and why:
/// - 1xx, 204, 205: no content. 206 or any `Content-Range`: a range of the identity body (RFC 9110 §14.4), whose
///   offsets would mean nothing in a coded one.
/// - A `Content-Encoding` already (never a second coding on top), `Cache-Control: no-transform` (RFC 9111
///   §5.2.2.6: an intermediary must not transform the content), a type outside `types`, or a declared length under
///   `min_size`.
///
/// Every other response varies with `Accept-Encoding`, whether or not this client gets a coding, so it gets
/// `Vary: Accept-Encoding` (merged with the upstream's `Vary`) and caches keep the variants apart. A coded response
/// also loses `Content-Length` (the coded length is known only at the end: chunked on HTTP/1.1, DATA frames on
/// HTTP/2), `Accept-Ranges` (ranges would apply to the coded bytes, which differ from request to request) and its
/// strong `ETag` becomes weak (RFC 9110 §8.8.1: the coded bytes are not the upstream's, byte for byte).
///
/// HEAD is answered with the fields a GET would get (RFC 9110 §9.3.2), with no body to code. A 304 gets the `Vary`
/// and weak `ETag` the 200 would have had (§15.4.5), so a client's cached coded copy stays valid.
public struct CompressionDecision: Sendable, Equatable {
    /// What becomes of the body.
    public enum Outcome: Sendable, Equatable {
        /// Code the body with this coding and level.
        case encode(ContentCoding, level: Int)
        /// A HEAD response: the fields of a coded response, no body to code.
        case describe(ContentCoding)
        /// The body goes as it is.
        case pass(PassReason)
    }

    /// Why a response goes as it is (for tests, logs and metrics).
    public enum PassReason: String, Sendable, Equatable {
        /// 1xx, 204 or 205: no content.
        case noContent = "no_content"
        /// 304: no content, but the fields of the 200 it stands for.
        case notModified = "not_modified"
        /// 206 or a `Content-Range`.
        case range
        /// A `Content-Encoding` other than identity.
        case alreadyEncoded = "already_encoded"
        /// `Cache-Control: no-transform`.
        case noTransform = "no_transform"
        /// A media type outside the route's `types`, or none.
        case type
        /// A declared length under `min_size`, or 0.
        case tooSmall = "too_small"
        /// The client accepts none of the route's codings (or sent no `Accept-Encoding`).
        case notAccepted = "not_accepted"
    }

    /// What to do with an `ETag` field.
    public enum ETagEdit: Sendable, Equatable {
        case keep
        /// Replace its value (a strong tag made weak).
        case replace(String)
        /// Drop it: not a valid entity tag, so it cannot be weakened.
        case remove
    }

    public var outcome: Outcome
    /// The `Vary` value to send in place of every `Vary` field line the response has; nil: leave them.
    public var vary: String?
    public var etag: ETagEdit

    /// The `Content-Encoding` to add, for a coded response or a HEAD's; nil: none.
    public var contentEncoding: ContentCoding? {
        switch outcome {
        case .encode(let coding, _), .describe(let coding): coding
        case .pass: nil
        }
    }

    /// `Content-Length` and `Accept-Ranges` are removed (a coded response, or a HEAD standing for one).
    public var removesLengthAndRanges: Bool { contentEncoding != nil }

    /// The response fields the rules read, as text; several field lines of one name joined with ", ".
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var contentType: String?
        public var contentEncoding: String?
        public var contentLength: Int64?
        public var contentRange: String?
        public var cacheControl: String?
        public var etag: String?
        public var vary: String?

        public init(
            status: Int, contentType: String? = nil, contentEncoding: String? = nil, contentLength: Int64? = nil,
            contentRange: String? = nil, cacheControl: String? = nil, etag: String? = nil, vary: String? = nil
        ) {
            self.status = status
            self.contentType = contentType
            self.contentEncoding = contentEncoding
            self.contentLength = contentLength
            self.contentRange = contentRange
            self.cacheControl = cacheControl
            self.etag = etag
            self.vary = vary
        }
    }

    public init(outcome: Outcome, vary: String? = nil, etag: ETagEdit = .keep) {
        self.outcome = outcome
        self.vary = vary
        self.etag = etag
    }

    /// The decision for `response` to a request (a HEAD or not, with its `Accept-Encoding`), under `policy`.
    public init(policy: CompressionPolicy, isHEAD: Bool, accept: AcceptEncoding, response: Response) {
        let status = response.status
        if status < 200 || status == 204 || status == 205 {
            self.init(outcome: .pass(.noContent))
            return
        }
        if status == 206 || response.contentRange != nil {
            self.init(outcome: .pass(.range))
            return
        }
        if let encoding = response.contentEncoding, !Self.isIdentity(encoding) {
            self.init(outcome: .pass(.alreadyEncoded))
            return
        }
        if let cacheControl = response.cacheControl, Self.hasNoTransform(cacheControl) {
            self.init(outcome: .pass(.noTransform))
            return
        }
        let coding = accept.preferredCoding(among: policy.codings)
        if status == 304 {
            // A 304 often omits Content-Type; without one, it stands for a response that would have been coded.
            if let type = response.contentType, !policy.compresses(contentType: type) {
                self.init(outcome: .pass(.notModified))
                return
            }
            self.init(
                outcome: .pass(.notModified), vary: Self.varyAddingAcceptEncoding(response.vary),
                etag: coding == nil ? .keep : Self.weakened(response.etag))
            return
        }
        guard policy.compresses(contentType: response.contentType) else {
            self.init(outcome: .pass(.type))
            return
        }
        if let length = response.contentLength, length == 0 || length < policy.minimumSize {
            self.init(outcome: .pass(.tooSmall))
            return
        }
        let vary = Self.varyAddingAcceptEncoding(response.vary)
        guard let coding else {
            self.init(outcome: .pass(.notAccepted), vary: vary)
            return
        }
        let outcome: Outcome = isHEAD ? .describe(coding) : .encode(coding, level: policy.levels[coding])
        self.init(outcome: outcome, vary: vary, etag: Self.weakened(response.etag))
    }

    /// Whether a `Content-Encoding` value names no coding (`identity`, or only empty members).
    static func isIdentity(_ value: String) -> Bool {
        value.split(separator: ",").allSatisfy { member in
            let token = member.trimmingBlanks()
            return token.isEmpty || token.lowercased() == "identity"
        }
    }

    /// Whether a `Cache-Control` value has the `no-transform` directive; commas inside quoted values (`private="a,
    /// b"`) do not split directives.
    static func hasNoTransform(_ value: String) -> Bool {
        var directive: [UInt8] = []
        var inQuotes = false
        var escaped = false
        var inArgument = false
        func isNoTransform(_ name: [UInt8]) -> Bool {
            String(decoding: name, as: UTF8.self).trimmingBlanks().lowercased() == "no-transform"
        }
        for byte in value.utf8 {
            if inQuotes {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true }
                else if byte == UInt8(ascii: "\"") { inQuotes = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inQuotes = true
            case UInt8(ascii: ","):
                if isNoTransform(directive) { return true }
                directive = []
                inArgument = false
            case UInt8(ascii: "="): inArgument = true
            default: if !inArgument { directive.append(byte) }
            }
        }
        return isNoTransform(directive)
    }

    /// The `Vary` value with `Accept-Encoding` added, or nil when it needs no change: it lists it already, or
    /// is `*` (which varies on everything, RFC 9110 §12.5.5).
    static func varyAddingAcceptEncoding(_ vary: String?) -> String? {
        guard let vary else { return "Accept-Encoding" }
        let members = vary.split(separator: ",").map { $0.trimmingBlanks() }.filter { !$0.isEmpty }
        if members.contains(where: { $0 == "*" || $0.lowercased() == "accept-encoding" }) { return nil }
        return (members + ["Accept-Encoding"]).joined(separator: ", ")
    }

    /// A strong entity tag made weak (`"v1"` → `W/"v1"`); a weak one kept; anything that is not an entity tag
    /// removed, as nginx does, since it cannot be weakened and must not be kept strong (RFC 9110 §8.8.3).
    static func weakened(_ etag: String?) -> ETagEdit {
        guard let etag else { return .keep }
        let value = etag.trimmingBlanks()
        if value.hasPrefix("W/") { return .keep }
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { return .replace("W/" + value) }
        return .remove
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
    func trimmingBlanks() -> String {
        let isBlank = { (character: Character) in character == " " || character == "\t" }
        guard let start = firstIndex(where: { !isBlank($0) }), let last = lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return String(self[start...last])
    }
}
