// SPDX-License-Identifier: Apache-2.0
/// Why a request went upstream (RFC 9211 §2.2, the `fwd` parameter).
public enum ForwardReason: String, Sendable, Equatable {
    /// The cache was configured not to handle this request.
    case bypass
    /// The method is not cacheable.
    case method
    /// Nothing stored for the URI.
    case uriMiss = "uri-miss"
    /// Something stored for the URI, but not for this request's `Vary`'d fields.
    case varyMiss = "vary-miss"
    /// A miss for another reason (the stored entry is not this key's).
    case miss
    /// A usable stored response, but the request's directives did not allow it (`no-cache`, `max-age`).
    case request
    /// A stored response that was stale (or must be validated on every use).
    case stale
}

/// The `Cache-Status` field (RFC 9211) this cache adds to every response of a route it serves: one list member,
/// this cache's name with its parameters.
public struct CacheStatus: Sendable, Equatable {
    /// The cache's name (the policy's `statusName`).
    public var name: String
    /// Served from the cache without going upstream (`hit`).
    public var hit = false
    /// Why it went upstream (`fwd`), when it did.
    public var forward: ForwardReason?
    /// The status the upstream answered with (`fwd-status`), when it differs from the one sent on (a 304).
    public var forwardStatus: Int?
    /// Seconds of freshness left (`ttl`; negative when served stale).
    public var timeToLive: Int64?
    /// The upstream's response was stored (`stored`).
    public var stored = false
    /// The request waited for another's fetch of the same key (`collapsed`).
    public var collapsed = false
    /// A detail for people: a not-stored reason, `stale-while-revalidate`, `stale-if-error` (`detail`).
    public var detail: String?

    /// An empty status for cache `name`.
    public init(name: String) {
        self.name = name
    }

    /// A hit.
    public static func hit(name: String, timeToLive: Int64, detail: String? = nil) -> CacheStatus {
        var status = CacheStatus(name: name)
        status.hit = true
        status.timeToLive = timeToLive
        status.detail = detail
        return status
    }

    /// A forward.
    public static func forward(_ reason: ForwardReason, name: String) -> CacheStatus {
        var status = CacheStatus(name: name)
        status.forward = reason
        return status
    }

    /// The field value, a Structured Fields list member (RFC 8941): `jester; hit; ttl=376`,
    /// `jester; fwd=uri-miss; stored`, `jester; fwd=stale; fwd-status=304; ttl=60; stored`.
    public var fieldValue: String {
        var out = Self.item(name)
        if hit { out += "; hit" }
        if let forward { out += "; fwd=\(forward.rawValue)" }
        if let forwardStatus { out += "; fwd-status=\(forwardStatus)" }
        if let timeToLive { out += "; ttl=\(timeToLive)" }
        if stored { out += "; stored" }
        if collapsed { out += "; collapsed" }
        if let detail { out += "; detail=\(Self.item(detail))" }
        return out
    }

    /// A token when `text` is one (RFC 8941 §3.3.4: ALPHA or `*`, then tchar, `:` or `/`), else a string.
    static func item(_ text: String) -> String {
        let bytes = Array(text.utf8)
        let isAlpha = { (byte: UInt8) in (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") }
        let tokenTail = { (byte: UInt8) in
            byte > 0x20 && byte < 0x7F && !"\"(),;<=>?@[\\]{}".utf8.contains(byte)
        }
        if let first = bytes.first, isAlpha(first) || first == UInt8(ascii: "*"),
            bytes.dropFirst().allSatisfy(tokenTail)
        {
            return text
        }
        // sf-string: printable ASCII, with `"` and `\` escaped; anything else is replaced.
        var out = "\""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += "\\" + String(UnicodeScalar(byte))
            case 0x20..<0x7F: out += String(UnicodeScalar(byte))
            default: out += "?"
            }
        }
        return out + "\""
    }
}
