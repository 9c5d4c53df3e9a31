// SPDX-License-Identifier: Apache-2.0
import Foundation

/// `[filters.NAME]`: one named request filter (a rate limit, an authentication, IP rules), defined once and
/// attached to routes by name in an explicit order.
///
/// Filters are never implicit: a route runs exactly the filters its listener's `filters` list and its own
/// `filters` list name, in that order (`Configuration.filterChain(for:listener:)`). Everything a filter needs from
/// the file system (htpasswd, JWKS, secrets) was read by the loader, because the master reads files as root and
/// workers never do.
public struct FilterSettings: Sendable, Codable, Equatable {
    /// The name routes and listeners refer to (the `NAME` of `[filters.NAME]`).
    public var name: String
    /// What the filter does, with its typed settings.
    public var kind: FilterKind

    public init(name: String, kind: FilterKind) {
        self.name = name
        self.kind = kind
    }
}

/// What a filter does; each case carries the settings only that kind has, so a consumer cannot read a key that
/// does not belong to the kind.
public enum FilterKind: Sendable, Codable, Equatable {
    /// Refuse (or delay) requests over a rate, counted per key.
    case rateLimit(RateLimitSettings)
    /// HTTP Basic authentication against an htpasswd file.
    case basicAuth(BasicAuthSettings)
    /// Bearer JSON Web Tokens, checked against keys or a shared secret.
    case jwt(JWTSettings)
    /// Allow and deny lists of client networks.
    case ipRules(IPRuleSettings)
    /// A webhook's HMAC signature over the whole request body, checked against a shared secret.
    case hmacSignature(HMACSignatureSettings)
    /// Cross-origin resource sharing: preflights answered, `Access-Control-*` fields on responses.
    case cors(CORSSettings)

    /// The `kind` value that selects this case.
    public var name: FilterKindName {
        switch self {
        case .rateLimit: return .rateLimit
        case .basicAuth: return .basicAuth
        case .jwt: return .jwt
        case .ipRules: return .ipRules
        case .hmacSignature: return .hmacSignature
        case .cors: return .cors
        }
    }
}

/// The values of `kind` in `[filters.NAME]`, which select the keys the table may have.
public enum FilterKindName: String, Sendable, Codable, CaseIterable {
    case rateLimit = "rate_limit"
    case basicAuth = "basic_auth"
    case jwt = "jwt"
    case ipRules = "ip_rules"
    case hmacSignature = "hmac_signature"
    case cors = "cors"
}

/// `kind = "rate_limit"`: a limit of `rate` requests per `per`, with a burst, counted per key.
///
/// The limit is exact (GCRA in JesterCore): `burst` extra requests pass at once, `delay` more beyond those wait
/// until they conform to the rate instead of being refused, and anything further is refused with `status`.
/// In nginx's terms this is `limit_req ... burst=<burst + delay> delay=<burst>`.
public struct RateLimitSettings: Sendable, Codable, Equatable {
    /// Requests allowed per `per`, on average.
    public var rate: Int
    /// The period `rate` is counted over.
    public var per: Duration
    /// Extra requests allowed at once above the steady rate.
    public var burst: Int
    /// What identifies a client of the limit; several parts limit each combination separately.
    public var key: [RateLimitKeyPart]
    /// Where the counts live: this instance's shared memory, or Redis for many instances.
    public var scope: RateLimitScope
    /// Beyond the burst, this many further requests are delayed to conform to the rate rather than refused.
    public var delay: Int
    /// The status of a refusal (429 by default, with `Retry-After` and the `RateLimit` fields).
    public var status: Int
    /// The Redis server of a cluster-scope limit; nil for instance scope (the decoder guarantees the pairing).
    public var redis: RedisSettings?

    public init(
        rate: Int, per: Duration = .seconds(1), burst: Int = 0, key: [RateLimitKeyPart] = [.clientAddress],
        scope: RateLimitScope = .instance, delay: Int = 0, status: Int = 429, redis: RedisSettings? = nil
    ) {
        self.rate = rate
        self.per = per
        self.burst = burst
        self.key = key
        self.scope = scope
        self.delay = delay
        self.status = status
        self.redis = redis
    }

    /// The excess requests GCRA tolerates, in nginx's and JesterCore `GCRA`'s sense of `burst`: the ones passed
    /// at once plus the delayed ones.
    public var toleratedExcess: Int { burst + delay }

    /// The excess requests passed without waiting, in nginx's and JesterCore `GCRA`'s sense of `delay`.
    public var undelayedExcess: Int { burst }
}

/// One part of a rate limit's key.
public enum RateLimitKeyPart: Sendable, Codable, Hashable, CustomStringConvertible {
    /// The client's address, after the PROXY protocol and trusted-forwarder rules have named the real client.
    case clientAddress
    /// The route's name, so one definition limits each route separately.
    case route
    /// A request header's value (a missing header is the empty value).
    case header(String)
    /// A claim of the token a jwt filter earlier in the chain verified.
    case claim(String)

    /// Parses `client_address`, `route`, `header:NAME` or `claim:NAME`; nil when it is none of them.
    public init?(parsing text: String) {
        switch text {
        case "client_address": self = .clientAddress
        case "route": self = .route
        default:
            if text.hasPrefix("header:"), text.count > 7 {
                self = .header(String(text.dropFirst(7)))
            } else if text.hasPrefix("claim:"), text.count > 6 {
                self = .claim(String(text.dropFirst(6)))
            } else {
                return nil
            }
        }
    }

    /// As written in the configuration.
    public var description: String {
        switch self {
        case .clientAddress: return "client_address"
        case .route: return "route"
        case .header(let name): return "header:\(name)"
        case .claim(let name): return "claim:\(name)"
        }
    }
}

/// Where a rate limit counts.
public enum RateLimitScope: String, Sendable, Codable, CaseIterable {
    /// In shared memory the master creates: one limit for all workers and generations of this instance.
    case instance
    /// In Redis: one limit for every instance that uses the same server and key prefix.
    case cluster
}

/// `redis = { ... }` of a cluster-scope rate limit.
public struct RedisSettings: Sendable, Codable, Equatable {
    /// The server: an IP address, or a host name the master looks up (as it does upstream targets' names) and
    /// hands to the workers, which never block on a resolver.
    public var address: SocketAddressSpec
    /// The longest a request waits for Redis; then `onFailure` decides.
    public var timeout: Duration
    /// Connections per worker.
    public var poolSize: Int
    /// What happens to a request while Redis is down or slower than `timeout`.
    public var onFailure: RedisFailurePolicy
    /// Prepended to every key, so several limits (or applications) can share one Redis.
    public var keyPrefix: String
    /// The Redis 6 ACL user to authenticate as (`AUTH username password`); nil sends `AUTH password`, which is
    /// `requirepass` (the `default` user). Only with a password (the decoder guarantees the pairing).
    public var username: String?
    /// `password_file` as resolved against the configuration file's directory: what dumps and messages show.
    public var passwordFile: String?
    /// The password the loader read from `passwordFile` (final newline dropped), sent in `AUTH` when each pooled
    /// connection opens. Read by the master, like every secret, because workers never read files.
    public var password: String?
    /// The logical database (`SELECT`) the keys live in; 0, Redis's default, sends no SELECT.
    @DefaultIfMissing<RedisDatabaseDefault> public var database: Int = RedisDatabaseDefault.defaultValue

    public init(
        address: SocketAddressSpec, timeout: Duration = .milliseconds(50), poolSize: Int = 4,
        onFailure: RedisFailurePolicy = .allow, keyPrefix: String = "jester:rl:", username: String? = nil,
        passwordFile: String? = nil, password: String? = nil, database: Int = 0
    ) {
        self.address = address
        self.timeout = timeout
        self.poolSize = poolSize
        self.onFailure = onFailure
        self.keyPrefix = keyPrefix
        self.username = username
        self.passwordFile = passwordFile
        self.password = password
        self.database = database
    }
}

/// The default of `redis.database`, so the settings of an older binary (a binary upgrade's hand-over) decode.
public enum RedisDatabaseDefault: CodableDefault {
    public static let defaultValue = 0
}

/// What a cluster-scope limit does while Redis cannot answer in time.
public enum RedisFailurePolicy: String, Sendable, Codable, CaseIterable {
    /// Let the request through (fail open): an outage of the limiter is not an outage of the service.
    case allow
    /// Refuse the request with 503 and `Retry-After` (fail closed: the service, not the client, is at fault).
    case deny
}

/// `kind = "basic_auth"`: users and password hashes from an htpasswd file.
public struct BasicAuthSettings: Sendable, Codable, Equatable {
    /// The realm named in `WWW-Authenticate: Basic realm="..."`.
    public var realm: String
    /// The htpasswd file as resolved against the configuration file's directory, for messages.
    public var htpasswdFile: String
    /// The file's text, as read by the loader; every line was checked (`HtpasswdCheck`).
    public var htpasswd: String

    public init(realm: String, htpasswdFile: String, htpasswd: String) {
        self.realm = realm
        self.htpasswdFile = htpasswdFile
        self.htpasswd = htpasswd
    }
}

/// The JWS algorithms a jwt filter may accept (RFC 7518 §3.1, RFC 8037 for EdDSA). `none` is not one of them.
public enum JWTAlgorithm: String, Sendable, Codable, CaseIterable {
    case hs256 = "HS256"
    case hs384 = "HS384"
    case hs512 = "HS512"
    case rs256 = "RS256"
    case rs384 = "RS384"
    case rs512 = "RS512"
    case ps256 = "PS256"
    case ps384 = "PS384"
    case ps512 = "PS512"
    case es256 = "ES256"
    case es384 = "ES384"
    case edDSA = "EdDSA"

    /// HMAC with a shared secret (`secret_file`), as opposed to a public key from a JWKS.
    public var isHMAC: Bool { [.hs256, .hs384, .hs512].contains(self) }

    /// The shortest HMAC secret allowed: as long as the hash output (RFC 7518 §3.2); 0 for public-key algorithms.
    public var minimumSecretLength: Int {
        switch self {
        case .hs256: return 32
        case .hs384: return 48
        case .hs512: return 64
        default: return 0
        }
    }
}

/// `kind = "jwt"`: bearer tokens checked for signature, issuer, audience, expiry and required claims.
public struct JWTSettings: Sendable, Codable, Equatable {
    /// The algorithms a token may use; a token with any other (or `none`) is refused.
    public var algorithms: [JWTAlgorithm]
    /// Accepted `iss` values; empty: any.
    public var issuers: [String] = []
    /// Accepted `aud` values (a token's `aud` must contain one); empty: any.
    public var audiences: [String] = []
    /// Clock skew allowed when checking `exp` and `nbf`.
    public var leeway: Duration = .zero
    /// The JWKS file as resolved, for messages; its content is `jwks`.
    public var jwksFile: String?
    /// The JWKS read by the loader: a JSON object with a `keys` array.
    public var jwks: Data?
    /// A JWKS the master fetches, and refreshes every `jwksRefresh` (keeping the last good set on failure).
    public var jwksURL: String?
    /// How often `jwksURL` is fetched again.
    public var jwksRefresh: Duration = .seconds(300)
    /// The HMAC secret's file as resolved, for messages; its content is `secret`.
    public var secretFile: String?
    /// The HMAC secret for HS* algorithms (the file's bytes without a final newline).
    public var secret: Data?
    /// The request header carrying the token; for `Authorization`, after a `Bearer ` prefix.
    public var header: String = "Authorization"
    /// Longer tokens are refused before any decoding.
    public var maxTokenSize: Int = 8192
    /// Claims copied into request headers for the upstream (any client copy of those headers is removed first).
    public var forwardClaims: [ClaimHeader] = []
    /// Claims a valid token must have (else 403): equal to the value, or an array or space-separated string
    /// containing it.
    public var requireClaims: [ClaimRequirement] = []

    public init(algorithms: [JWTAlgorithm]) {
        self.algorithms = algorithms
    }
}

/// One `forward_claims` entry: the claim `claim` is sent upstream in the header `header`.
public struct ClaimHeader: Sendable, Codable, Equatable {
    /// The claim's name in the token.
    public var claim: String
    /// The request header that carries its value upstream (a string, a number, or an array joined by ", ").
    public var header: String

    public init(claim: String, header: String) {
        self.claim = claim
        self.header = header
    }
}

/// One `require_claims` entry.
public struct ClaimRequirement: Sendable, Codable, Equatable {
    /// The claim's name in the token.
    public var claim: String
    /// The value it must equal, or contain when it is an array or a space-separated string (OAuth `scope`).
    public var value: String

    public init(claim: String, value: String) {
        self.claim = claim
        self.value = value
    }
}

/// `kind = "ip_rules"`: client networks allowed and denied (CIDR strings, checked by the decoder with
/// JesterCore's `CIDR`).
public struct IPRuleSettings: Sendable, Codable, Equatable {
    /// When non-empty, only clients in these networks pass (unless denied).
    public var allow: [String]
    /// Clients in these networks are refused with 403, even when `allow` has them too.
    public var deny: [String]

    public init(allow: [String] = [], deny: [String] = []) {
        self.allow = allow
        self.deny = deny
    }
}

/// `kind = "hmac_signature"`: a webhook signature over the whole request body (GitHub's
/// `X-Hub-Signature-256: sha256=<hex>`, Shopify's `X-Shopify-Hmac-Sha256: <base64>`), checked with a shared secret.
///
/// The only filter kind that reads the body (`RequestFilter.bodyLimit`): the signature covers exactly the bytes
/// the sender wrote, so the body is held back until it is checked, and what is checked is what goes upstream.
public struct HMACSignatureSettings: Sendable, Codable, Equatable {
    /// The request field that carries the signature (one of that name; several are refused as ambiguous).
    public var header: String
    /// The hash of the HMAC (RFC 2104).
    public var algorithm: HMACAlgorithm
    /// How the field writes the digest.
    public var encoding: SignatureEncoding
    /// What precedes the digest in the field (`sha256=` for GitHub), compared exactly; empty: nothing.
    public var prefix: String
    /// The secret's file as resolved, for messages and `jester config dump`; its content is `secret`.
    public var secretFile: String
    /// The shared secret (the file's bytes without a final newline), read by the master; never empty.
    public var secret: Data
    /// The most request body read and signed; a longer body is refused (413) before any of it goes upstream.
    public var maxBody: Int

    /// The bounds of `max_body`: a byte, and 16 MiB (the body is held in memory until it is checked).
    public static let maxBodyRange = 1...(16 << 20)

    public init(
        header: String, secretFile: String, secret: Data, algorithm: HMACAlgorithm = .sha256,
        encoding: SignatureEncoding = .hex, prefix: String = "", maxBody: Int = 1 << 20
    ) {
        self.header = header
        self.algorithm = algorithm
        self.encoding = encoding
        self.prefix = prefix
        self.secretFile = secretFile
        self.secret = secret
        self.maxBody = maxBody
    }
}

/// The hashes an hmac_signature filter computes its HMAC with (SHA-1, which some old webhooks still send, is not
/// one of them).
public enum HMACAlgorithm: String, Sendable, Codable, CaseIterable {
    case sha256
    case sha384
    case sha512
}

/// How a signature field writes its digest.
public enum SignatureEncoding: String, Sendable, Codable, CaseIterable {
    /// Hexadecimal digits, either case (GitHub, Gitea).
    case hex
    /// Standard base64 with padding, RFC 4648 §4 (Shopify).
    case base64
}

extension Configuration {
    /// The filter called `name`.
    public func filter(named name: String) -> FilterSettings? {
        filters.first { $0.name == name }
    }

    /// The filters a request on `listener` taken by `route` passes, in order: the listener's list, then the
    /// route's. The decoder checked that every name is defined and none repeats within a chain.
    public func filterChain(for route: RouteSettings, listener: String) -> [FilterSettings] {
        let listenerFilters = listeners.first { $0.name == listener }?.filters ?? []
        return (listenerFilters + route.filters).compactMap(filter(named:))
    }
}

/// An array that decodes as empty when its key is missing, for fields added after a binary upgrade may already
/// hand over settings encoded by an older binary (which did not write them).
///
/// Synthesised `Codable` calls `decode(_:forKey:)` for the wrapped field; the more specific overload on
/// `KeyedDecodingContainer` below turns a missing key into an empty array, so the containing type keeps its
/// synthesised conformance.
@propertyWrapper
public struct EmptyIfMissing<Element: Sendable & Codable & Equatable>: Sendable, Codable, Equatable {
    public var wrappedValue: [Element]

    public init(wrappedValue: [Element] = []) {
        self.wrappedValue = wrappedValue
    }

    public init(from decoder: any Decoder) throws {
        wrappedValue = try decoder.singleValueContainer().decode([Element].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue)
    }
}

extension KeyedDecodingContainer {
    /// A missing key is an empty array (see `EmptyIfMissing`).
    func decode<Element>(_ type: EmptyIfMissing<Element>.Type, forKey key: Key) throws -> EmptyIfMissing<Element> {
        try decodeIfPresent(type, forKey: key) ?? EmptyIfMissing()
    }
}
