// SPDX-License-Identifier: Apache-2.0
import JesterAuth

/// Tokens a `jwt` filter verified recently, so a client that sends the same bearer token on every request pays
/// the signature check and the JSON decoding once, not per request (bench/PERFORMANCE.md, "Request filters": the
/// check costs tens of microseconds, most of it decoding; nginx Plus and Envoy keep such a cache too).
///
/// What a hit still checks: the token's times (`exp` and `nbf`, with the filter's leeway) against now, so a cached
/// token expires exactly when an uncached one would. What empties it: a new key set (a key withdrawn from the JWKS
/// must stop its tokens at once) and a reload (a new filter, a new cache). Only successes are kept, so a client
/// sending bad tokens pays the full check every time, and the cache cannot be filled with them.
///
/// Bounded: `capacity` tokens of at most `maxTokenBytes` each (longer ones are checked every time), replaced
/// oldest first. Keyed by the token text itself, so a hit is an exact match, never a digest collision.
struct VerifiedTokenCache {
    let capacity: Int
    let maxTokenBytes: Int
    private var entries: [Substring: VerifiedToken] = [:]
    /// Insertion order, as a ring: `order[next]` is the oldest once the ring is full.
    private var order: [Substring] = []
    private var next = 0

    init(capacity: Int = 1024, maxTokenBytes: Int = 2048) {
        self.capacity = capacity
        self.maxTokenBytes = maxTokenBytes
    }

    var count: Int { entries.count }

    /// The verified token, if `token` was verified before and its times still hold at `now` (seconds since the
    /// epoch, `leeway` seconds of clock skew allowed); a token that expired is dropped.
    mutating func lookUp(_ token: Substring, now: Double, leeway: Double) -> VerifiedToken? {
        guard let verified = entries[token] else { return nil }
        let claims = verified.claims
        if let expiry = claims.expiry, now >= expiry + leeway {
            entries[token] = nil
            return nil
        }
        if let notBefore = claims.notBefore, now < notBefore - leeway { return nil }
        return verified
    }

    mutating func insert(_ token: Substring, _ verified: VerifiedToken) {
        guard capacity > 0, token.utf8.count <= maxTokenBytes, entries[token] == nil else { return }
        // A copy of the text: the request's buffer is not kept alive by the cache.
        let key = Substring(String(token))
        if order.count < capacity {
            order.append(key)
        } else {
            entries[order[next]] = nil
            order[next] = key
            next = (next + 1) % capacity
        }
        entries[key] = verified
    }

    mutating func removeAll() {
        entries.removeAll()
        order.removeAll()
        next = 0
    }
}
