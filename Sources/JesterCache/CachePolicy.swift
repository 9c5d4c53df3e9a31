// SPDX-License-Identifier: Apache-2.0
/// A route's cache settings, compiled once per configuration: what the pure decisions need beyond the messages.
///
/// Every default is RFC 9111's behaviour for a shared cache, or the safer choice where the RFC leaves one: no
/// heuristic freshness, no caching for requests with credentials or cookies, no response with `Set-Cookie`.
public struct CachePolicy: Sendable, Equatable {
    /// How the query takes part in the key.
    public enum QueryKey: Sendable, Equatable {
        /// As received, byte for byte (the RFC's key: the whole target URI).
        case whole
        /// Not at all: `/a?x=1` and `/a?y=2` share an entry (for tracking parameters an origin ignores).
        case ignored
        /// Only these parameters, sorted by name and then value, so their order does not split entries.
        case only([String])
    }

    /// What to do with request fields that are not in the key yet may change the origin's answer
    /// (`unkeyedFields`): the cache-poisoning vector.
    public enum UnkeyedFieldAction: Sendable, Equatable {
        /// Remove them from the request that goes upstream: the origin never sees them, so the response cannot
        /// depend on them, and the request is still served from and stored in the cache. The default.
        case strip
        /// Leave them, but a request carrying any of them neither uses nor fills the cache.
        case bypass
    }

    /// What to do with a response that sets cookies.
    public enum SetCookieRule: Sendable, Equatable {
        /// Do not store it: a cookie is usually one client's session (the default).
        case doNotStore
        /// Store it without its `Set-Cookie` lines; the client that caused the fetch still gets them.
        case storeWithout
    }

    /// Heuristic freshness (RFC 9111 §4.2.2) for responses that give no lifetime but a `Last-Modified`.
    public struct Heuristic: Sendable, Equatable {
        /// The part of the time since `Last-Modified` a response stays fresh, in percent (the RFC's typical 10).
        public var percent: Int64
        /// The longest lifetime it grants, in seconds.
        public var maxLifetime: Int64

        /// A heuristic; the defaults are 10% capped at a day.
        public init(percent: Int64 = 10, maxLifetime: Int64 = 86_400) {
            self.percent = percent
            self.maxLifetime = maxLifetime
        }
    }

    /// Request methods the cache answers. Only GET responses are stored; HEAD is answered from a stored GET (§4),
    /// and removing it sends every HEAD upstream.
    public var methods: Set<String> = ["GET", "HEAD"]
    /// The query's part in the key.
    public var queryKey: QueryKey = .whole
    /// Request fields added to every key (lowercase), beyond those a response's `Vary` names.
    public var keyFields: [String] = []
    /// Request fields that can change an origin's answer without being in the key. A field also in `keyFields`
    /// is keyed and passes. The defaults are the ones known to be honoured by frameworks and origins
    /// (X-Forwarded-Host and -Scheme by Rails and Symfony, X-Original-URL and X-Rewrite-URL by IIS and
    /// Symfony, the method overrides by many); `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` are
    /// replaced by Jester's own on every request anyway.
    public var unkeyedFields: [String] = CachePolicy.defaultUnkeyedFields
    /// What to do with them.
    public var unkeyedFieldAction: UnkeyedFieldAction = .strip
    /// Requests with `Authorization` use and fill the cache (the route's own filters checked the credentials).
    public var cachesAuthorizedRequests = false
    /// Requests with `Cookie` use and fill the cache (the cookie is not in the key unless `keyFields` or `Vary`
    /// says so).
    public var cachesRequestsWithCookies = false
    /// Responses with `Set-Cookie`.
    public var setCookie: SetCookieRule = .doNotStore
    /// Heuristic freshness; nil (the default): a response without an explicit lifetime is stored stale, and only
    /// when it has a validator, so every use is a conditional request (a 304 saves sending the body again).
    public var heuristic: Heuristic? = nil
    /// `stale-if-error` for responses that do not give one, in seconds; nil: none.
    public var staleIfError: Int64? = nil
    /// The client's `no-cache` and `max-age=0` make the cache revalidate (the RFC). False protects the origin
    /// from clients that send them on every reload; the response is then served as if they were absent.
    public var honoursClientRevalidation = true
    /// The largest body stored, in bytes; nil: no limit beyond the cache's size.
    public var maxObjectSize: Int64? = nil
    /// The cache's name in `Cache-Status` (RFC 9211 §2: identifies this cache among those on the path).
    public var statusName = "jester"

    /// RFC 9111's behaviour and this type's defaults.
    public init() {}

    /// The unkeyed fields removed (or bypassed) unless configured otherwise, lowercase.
    public static let defaultUnkeyedFields = [
        "x-forwarded-host", "x-forwarded-scheme", "x-forwarded-server", "x-forwarded-port", "x-forwarded-prefix",
        "x-host", "x-original-url", "x-rewrite-url", "x-original-host", "x-http-method-override",
        "x-http-method", "x-method-override",
    ]

    /// Status codes a response may be stored with on heuristic freshness (RFC 9110 §15.1), except 206: this
    /// cache does not store partial content (RFC 9111 §3.3 forbids it to caches that do not combine ranges).
    public static let heuristicallyCacheableStatuses: Set<Int> = [
        200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501,
    ]

    /// Status codes whose meaning this cache knows, for `must-understand` (§5.2.2.3): those of RFC 9110 §15.
    public static let understoodStatuses: Set<Int> = [
        200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406,
        407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505,
    ]
}
