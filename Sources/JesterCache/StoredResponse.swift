// SPDX-License-Identifier: Apache-2.0
/// What the cache keeps of a response besides its body: the metadata every lookup decides on.
///
/// The index slot holds the hashes and the numbers of `freshness` (so eviction and the fresh/stale test need no
/// parsing); the rest (status, fields, key, Vary'd values) is the head of the body file, read on a hit.
public struct StoredResponse: Sendable, Equatable {
    /// The primary key it was stored under.
    public var key: CacheKey
    /// The status code.
    public var status: Int
    /// The fields to send with it, as stored: without hop-by-hop fields, `Age`, and those the response's
    /// `no-cache` or `private` named (§3.1, §5.2.2.4, §5.2.2.7).
    public var fields: CacheFields
    /// When the request that fetched (or last refreshed) it was sent, in seconds since the epoch.
    public var requestTime: Int64
    /// When that request's response head arrived.
    public var responseTime: Int64
    /// Its freshness, computed when stored or refreshed.
    public var freshness: Freshness
    /// The request fields its `Vary` named (lowercase, sorted), and their normalized values in the request that
    /// fetched it (§4.1).
    public var varyValues: [VaryValue]

    /// A stored response.
    public init(
        key: CacheKey, status: Int, fields: CacheFields, requestTime: Int64, responseTime: Int64,
        freshness: Freshness, varyValues: [VaryValue]
    ) {
        self.key = key
        self.status = status
        self.fields = fields
        self.requestTime = requestTime
        self.responseTime = responseTime
        self.freshness = freshness
        self.varyValues = varyValues
    }

    /// The names `Vary` listed.
    public var varyNames: [String] { varyValues.map(\.name) }

    /// The hash the index finds this response under: the primary key's if it has no `Vary`, else its variant's.
    public func indexHash(seed: (UInt64, UInt64)) -> CacheKeyHash {
        varyValues.isEmpty ? key.hash(seed: seed) : key.variantHash(values: varyValues, seed: seed)
    }

    /// Whether `request` selects it (§4.1): every field `Vary` named has the same normalized value.
    public func varyMatches(_ request: CacheFields) -> Bool {
        varyValues.allSatisfy { VaryValue(name: $0.name, request: request) == $0 }
    }

    /// Its `ETag`, if it has exactly one.
    public var entityTag: EntityTag? {
        guard case .value(let text) = fields.single("ETag") else { return nil }
        return EntityTag(text)
    }

    /// Its `Last-Modified`, if it has exactly one, as sent.
    public var lastModified: String? {
        if case .value(let text) = fields.single("Last-Modified") { return text }
        return nil
    }

    /// The fields it is served with at `now`: the stored ones and its current `Age` (§5.1).
    public func servedFields(at now: Int64) -> CacheFields {
        var served = fields
        served.set("Age", freshness.ageFieldValue(at: now))
        return served
    }
}

/// An entity tag (RFC 9110 §8.8.3), for validation and conditional requests.
public struct EntityTag: Sendable, Equatable {
    /// `W/` was in front of it.
    public var isWeak: Bool
    /// The opaque tag with its quotes, as sent.
    public var opaque: String

    /// An entity tag from a field value; nil when it is not one (`"abc"`, `W/"abc"`).
    public init?(_ text: String) {
        var rest = Substring(text)
        isWeak = rest.hasPrefix("W/")
        if isWeak { rest = rest.dropFirst(2) }
        guard rest.count >= 2, rest.first == "\"", rest.last == "\"", !rest.dropFirst().dropLast().contains("\"")
        else { return nil }
        opaque = String(rest)
    }

    /// `W/"x"` or `"x"`.
    public var text: String { (isWeak ? "W/" : "") + opaque }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and the same.
    public func strongMatches(_ other: EntityTag) -> Bool {
        !isWeak && !other.isWeak && opaque == other.opaque
    }

    /// Weak comparison: the same opaque tags, weak or not.
    public func weakMatches(_ other: EntityTag) -> Bool {
        opaque == other.opaque
    }
}
