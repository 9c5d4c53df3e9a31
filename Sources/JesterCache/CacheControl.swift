// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// One directive of a `Cache-Control` field (RFC 9111 §5.2): a token, with an optional argument in token or
/// quoted-string form.
public struct CacheDirective: Sendable, Equatable {
    /// What followed the name.
    public enum Argument: Sendable, Equatable {
        /// Nothing: `no-store`.
        case bare
        /// A token or an unquoted quoted-string: `max-age=60`, `max-age="60"`, `private="Set-Cookie"`.
        case value(String)
        /// `=` followed by neither a token nor a complete quoted string (`max-age=`, `max-age="60`, `max-age=6 0`).
        case malformed
    }

    /// The name in lowercase: directives compare without regard to case (§5.2).
    public var name: String
    /// The argument.
    public var argument: Argument

    /// A directive.
    public init(_ name: String, _ argument: Argument = .bare) {
        self.name = name
        self.argument = argument
    }

    /// Every directive of every `Cache-Control` line of `fields`, in order. Members whose name is not a token are
    /// skipped: nothing can be understood of them (§5.2.3: unrecognized directives are ignored).
    public static func parse(_ fields: CacheFields) -> [CacheDirective] {
        fields.list("Cache-Control").compactMap(parse(member:))
    }

    /// One list member, `token [ "=" ( token / quoted-string ) ]`.
    static func parse(member: String) -> CacheDirective? {
        let bytes = Array(member.utf8)
        let equals = bytes.firstIndex(of: UInt8(ascii: "=")) ?? bytes.count
        let name = CacheFields.trimmed(bytes[..<equals])
        guard !name.isEmpty, name.utf8.allSatisfy(ASCII.isToken) else { return nil }
        let directiveName = CacheFields.lowercased(name)
        guard equals < bytes.count else { return CacheDirective(directiveName) }
        let raw = Array(CacheFields.trimmed(bytes[(equals + 1)...]).utf8)
        return CacheDirective(directiveName, argument(raw))
    }

    /// A token, or a quoted-string with its escapes undone (RFC 9110 §5.6.4).
    private static func argument(_ raw: [UInt8]) -> Argument {
        guard let first = raw.first else { return .malformed }
        guard first == UInt8(ascii: "\"") else {
            return raw.allSatisfy(ASCII.isToken) ? .value(String(decoding: raw, as: UTF8.self)) : .malformed
        }
        var value: [UInt8] = []
        var index = 1
        while index < raw.count {
            let byte = raw[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < raw.count else { return .malformed }
                value.append(raw[index + 1])
                index += 2
            } else if byte == UInt8(ascii: "\"") {
                // The closing quote must end the member.
                return index == raw.count - 1 ? .value(String(decoding: value, as: UTF8.self)) : .malformed
            } else {
                value.append(byte)
                index += 1
            }
        }
        return .malformed
    }
}

/// A delta-seconds directive's value (RFC 9111 §1.2.2) as the freshness rules need it.
public enum DeltaSeconds: Sendable, Equatable {
    /// The directive is not there.
    case absent
    /// A valid value; past 2^31 it is 2^31, as §1.2.2 requires of values too large to represent.
    case seconds(Int64)
    /// Present, but with no argument, a non-numeric one, or two lines disagreeing: §4.2.1 encourages treating
    /// such a response as stale, and the cache does.
    case invalid

    /// The largest value kept (§1.2.2: 2147483648).
    public static let ceiling: Int64 = 2_147_483_648

    /// The value of directive `name` among `directives`: repeated with the same value is that value (one
    /// intermediary may have copied the line), repeated with different values is `invalid` (§4.2.1).
    static func of(_ name: String, in directives: [CacheDirective]) -> DeltaSeconds {
        var result = DeltaSeconds.absent
        for directive in directives where directive.name == name {
            let value = parse(directive.argument)
            switch result {
            case .absent: result = value
            case .seconds(let seen) where value == .seconds(seen): continue
            default: return .invalid
            }
        }
        return result
    }

    /// `1*DIGIT`, in token or quoted form (§5.2: recipients accept both).
    static func parse(_ argument: CacheDirective.Argument) -> DeltaSeconds {
        guard case .value(let text) = argument, !text.isEmpty else { return .invalid }
        var value: Int64 = 0
        for byte in text.utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return .invalid }
            value = min(value * 10 + Int64(byte - UInt8(ascii: "0")), ceiling)
        }
        return .seconds(value)
    }

    /// The value when valid.
    public var value: Int64? {
        if case .seconds(let seconds) = self { return seconds }
        return nil
    }
}

/// A directive that applies to the whole response or only to some of its fields: `no-cache` and `private`
/// (§5.2.2.4, §5.2.2.7).
public enum FieldScope: Sendable, Equatable {
    /// The directive is not there.
    case absent
    /// Unqualified: the whole response.
    case whole
    /// Qualified: only these fields (lowercase names).
    case fields([String])

    /// Merges every occurrence of `name`: an unqualified one wins (the most restrictive, §4.2.1), qualified
    /// ones add up. A malformed argument counts as unqualified, for the same reason.
    static func of(_ name: String, in directives: [CacheDirective]) -> FieldScope {
        var result = FieldScope.absent
        for directive in directives where directive.name == name {
            switch directive.argument {
            case .bare, .malformed:
                return .whole
            case .value(let list):
                let names = CacheFields.splitList(list).map(CacheFields.lowercased)
                if case .fields(let seen) = result {
                    result = .fields(seen + names.filter { !seen.contains($0) })
                } else {
                    result = .fields(names)
                }
            }
        }
        return result
    }

    /// The field names of a qualified directive; none otherwise.
    public var fieldNames: [String] {
        if case .fields(let names) = self { return names }
        return []
    }
}

/// A response's `Cache-Control` (RFC 9111 §5.2.2, RFC 5861, RFC 8246), as a shared cache reads it.
public struct ResponseCacheControl: Sendable, Equatable {
    /// `max-age`: freshness lifetime for any cache.
    public var maxAge: DeltaSeconds = .absent
    /// `s-maxage`: freshness lifetime for shared caches, over max-age and Expires; implies proxy-revalidate.
    public var sharedMaxAge: DeltaSeconds = .absent
    /// `no-store`: never store.
    public var noStore = false
    /// `no-cache`: whole, revalidate on every use; qualified, never send those fields unvalidated.
    public var noCache: FieldScope = .absent
    /// `private`: whole, a shared cache does not store it; qualified, it stores it without those fields.
    public var privateScope: FieldScope = .absent
    /// `public`: storable even where it would not be (an Authorization request; no explicit lifetime).
    public var isPublic = false
    /// `must-revalidate`: never served stale.
    public var mustRevalidate = false
    /// `proxy-revalidate`: never served stale by a shared cache.
    public var proxyRevalidate = false
    /// `no-transform`: no coding added or removed (the compression filter reads this too).
    public var noTransform = false
    /// `must-understand`: store only if the status code is understood; then no-store is overridden (§5.2.2.3).
    public var mustUnderstand = false
    /// `immutable` (RFC 8246): the body will not change while fresh; a client's reload need not revalidate.
    public var immutable = false
    /// `stale-while-revalidate` (RFC 5861 §3): serve stale this long while one background request revalidates.
    public var staleWhileRevalidate: DeltaSeconds = .absent
    /// `stale-if-error` (RFC 5861 §4): serve stale this long when the origin fails.
    public var staleIfError: DeltaSeconds = .absent

    /// Nothing said.
    public init() {}

    /// The directives of `fields`' `Cache-Control` lines.
    public init(_ fields: CacheFields) {
        self.init(directives: CacheDirective.parse(fields))
    }

    /// From parsed directives. Unknown ones are ignored (§5.2.3). Directives that only restrict are honoured
    /// even with a stray argument (`no-store=1`); ones that only permit are then ignored (`public=no`).
    public init(directives: [CacheDirective]) {
        func has(_ name: String, restrictive: Bool) -> Bool {
            directives.contains { $0.name == name && (restrictive || $0.argument == .bare) }
        }
        maxAge = .of("max-age", in: directives)
        sharedMaxAge = .of("s-maxage", in: directives)
        noStore = has("no-store", restrictive: true)
        noCache = .of("no-cache", in: directives)
        privateScope = .of("private", in: directives)
        isPublic = has("public", restrictive: false)
        mustRevalidate = has("must-revalidate", restrictive: true)
        proxyRevalidate = has("proxy-revalidate", restrictive: true)
        noTransform = has("no-transform", restrictive: true)
        mustUnderstand = has("must-understand", restrictive: false)
        immutable = has("immutable", restrictive: false)
        // An invalid stale-* value grants nothing.
        staleWhileRevalidate = DeltaSeconds.of("stale-while-revalidate", in: directives).validOrAbsent
        staleIfError = DeltaSeconds.of("stale-if-error", in: directives).validOrAbsent
    }

    /// Whether a shared cache may never serve the response stale (§4.2.4): must-revalidate, proxy-revalidate,
    /// or s-maxage, which carries proxy-revalidate's meaning (§5.2.2.10).
    public var forbidsStale: Bool {
        mustRevalidate || proxyRevalidate || sharedMaxAge != .absent
    }
}

/// A request's `Cache-Control` (RFC 9111 §5.2.1, RFC 5861 §4): what the client accepts from a cache.
public struct RequestCacheControl: Sendable, Equatable {
    /// How stale a response the client accepts (`max-stale`).
    public enum MaxStale: Sendable, Equatable {
        /// Not asked for (or unreadable): no stale response.
        case absent
        /// `max-stale` with no value: any staleness.
        case any
        /// Stale by at most this many seconds.
        case seconds(Int64)
    }

    /// `max-age`: the client accepts no response older than this. Invalid counts as 0 (revalidate).
    public var maxAge: Int64?
    /// `max-stale`.
    public var maxStale: MaxStale = .absent
    /// `min-fresh`: the response must stay fresh at least this much longer. Invalid is ignored.
    public var minFresh: Int64?
    /// `no-cache`: the client wants the stored response validated first.
    public var noCache = false
    /// `no-store`: store neither this request's response nor anything of it.
    public var noStore = false
    /// `no-transform`.
    public var noTransform = false
    /// `only-if-cached`: answer from the cache or with 504, never from the origin (§5.2.1.7).
    public var onlyIfCached = false
    /// `stale-if-error` in a request (RFC 5861 §4): the client accepts this much staleness on an origin error.
    public var staleIfError: Int64?

    /// Nothing said.
    public init() {}

    /// The directives of `fields`' `Cache-Control` lines. `Pragma: no-cache` is not read: RFC 9111 §5.4
    /// deprecates it, and HTTP/1.1 clients send Cache-Control with it.
    public init(_ fields: CacheFields) {
        self.init(directives: CacheDirective.parse(fields))
    }

    /// From parsed directives.
    public init(directives: [CacheDirective]) {
        switch DeltaSeconds.of("max-age", in: directives) {
        case .absent: maxAge = nil
        case .seconds(let seconds): maxAge = seconds
        // The most restrictive reading of a value the client got wrong.
        case .invalid: maxAge = 0
        }
        if let directive = directives.first(where: { $0.name == "max-stale" }) {
            if directive.argument == .bare {
                maxStale = .any
            } else if let seconds = DeltaSeconds.of("max-stale", in: directives).value {
                maxStale = .seconds(seconds)
            }
        }
        minFresh = DeltaSeconds.of("min-fresh", in: directives).value
        noCache = directives.contains { $0.name == "no-cache" }
        noStore = directives.contains { $0.name == "no-store" }
        noTransform = directives.contains { $0.name == "no-transform" }
        onlyIfCached = directives.contains { $0.name == "only-if-cached" }
        staleIfError = DeltaSeconds.of("stale-if-error", in: directives).value
    }

    /// Whether the client asked for anything beyond the cache's own freshness rules.
    var constrainsFreshness: Bool {
        maxAge != nil || minFresh != nil || noCache
    }
}

extension DeltaSeconds {
    /// `invalid` read as `absent`: for directives that only grant something.
    var validOrAbsent: DeltaSeconds {
        self == .invalid ? .absent : self
    }
}
