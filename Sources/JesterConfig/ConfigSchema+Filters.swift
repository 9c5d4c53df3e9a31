// SPDX-License-Identifier: Apache-2.0
extension ConfigSchema {
    /// The tables of `[filters.NAME]`, one per `kind`: each declares `kind` itself (a one-value choice) and only
    /// the keys of that kind, so a key of another kind is reported as unknown, and JSON Schema gets a `oneOf`.
    public static let filterKinds: [Table] = [
        rateLimitFilter, basicAuthFilter, jwtFilter, ipRulesFilter, hmacSignatureFilter, corsFilter,
    ]

    /// The table of one kind of filter.
    public static func filterTable(_ kind: FilterKindName) -> Table {
        switch kind {
        case .rateLimit: return rateLimitFilter
        case .basicAuth: return basicAuthFilter
        case .jwt: return jwtFilter
        case .ipRules: return ipRulesFilter
        case .hmacSignature: return hmacSignatureFilter
        case .cors: return corsFilter
        }
    }

    private static func kindField(_ kind: FilterKindName, _ summary: String) -> Field {
        Field("kind", .choice([kind.rawValue]), required: true, summary)
    }

    public static let rateLimitFilter = Table(
        "[filters.NAME], kind = rate_limit",
        [
            kindField(.rateLimit,
                "A limit of rate requests per per, counted per key with GCRA (exact, no window edges); over it the request is refused with status, Retry-After and the RateLimit and RateLimit-Policy fields, and never reaches an upstream."),
            Field("rate", .integer(1...100_000_000), required: true, "Requests allowed per period, on average."),
            Field("per", .duration, default: "\"1s\"", "The period rate is counted over."),
            Field("burst", .integer(0...100_000_000), default: "0",
                "Extra requests allowed at once above the steady rate."),
            Field("key", .array(.string), default: "[\"client_address\"]",
                "What a client of the limit is: \"client_address\" (after PROXY protocol and trusted forwarders), \"route\", \"header:NAME\", \"claim:NAME\" (a claim of a token a jwt filter earlier in the chain verified); several parts limit each combination."),
            Field("scope", .choice(RateLimitScope.allCases.map(\.rawValue)), default: "\"instance\"",
                "instance: counted in shared memory, one limit for all workers (kept across reloads and upgrades); cluster: counted in Redis, one limit for every instance using it."),
            Field("delay", .integer(0...100_000), default: "0",
                "Beyond the burst, this many more requests wait until they conform to the rate instead of being refused (nginx limit_req burst=burst+delay delay=burst); 0: refuse at once."),
            Field("status", .integer(400...599), default: "429", "The status of a refusal."),
            Field("redis", .table(redis), default: "none", "The Redis server of a cluster limit (required with scope = \"cluster\", only then)."),
        ])

    /// `redis = { ... }` of a cluster rate limit.
    public static let redis = Table(
        "redis",
        [
            Field("address", .hostAddress, required: true,
                "The Redis server: an IP address, or a host name the master looks up (every 30s, as it does upstream targets' names), and a port."),
            Field("timeout", .duration, default: "\"50ms\"",
                "The longest a request waits for Redis; then on_failure decides (a request is never held longer)."),
            Field("pool_size", .integer(1...64), default: "4", "Connections to Redis per worker."),
            Field("on_failure", .choice(RedisFailurePolicy.allCases.map(\.rawValue)), default: "\"allow\"",
                "While Redis is down, slow or refusing the password: allow the request (fail open, logged once per interval) or deny it with 503 and Retry-After (fail closed)."),
            Field("key_prefix", .string, default: "\"jester:rl:\"",
                "Prepended to every Redis key, so limits of different deployments sharing a server stay apart."),
            Field("password_file", .string, default: "none",
                "A file holding the Redis password (relative to this file; a final newline is not part of it), read by the master at start and on every reload; sent with AUTH when each connection opens. A refused AUTH is handled like a Redis that is down (on_failure)."),
            Field("username", .string, default: "none",
                "The Redis 6 ACL user (AUTH username password); without it AUTH sends the password alone (requirepass). Needs password_file."),
            Field("database", .integer(0...65535), default: "0", "The Redis database the keys live in (SELECT)."),
        ])

    public static let basicAuthFilter = Table(
        "[filters.NAME], kind = basic_auth",
        [
            kindField(.basicAuth,
                "HTTP Basic authentication: a request without valid credentials gets 401 with WWW-Authenticate and never reaches an upstream."),
            Field("realm", .string, default: "\"jester\"", "The realm named in WWW-Authenticate."),
            Field("htpasswd", .string, required: true,
                "The htpasswd file (relative to this file), read by the master at start and on every reload; every line must be user:hash with bcrypt ($2y$, $2b$, $2a$), SHA-256-crypt ($5$) or SHA-512-crypt ($6$)."),
        ])

    public static let jwtFilter = Table(
        "[filters.NAME], kind = jwt",
        [
            kindField(.jwt,
                "Bearer JSON Web Tokens: a missing or invalid token gets 401 with WWW-Authenticate, a valid one without require_claims gets 403; neither reaches an upstream."),
            Field("algorithms", .array(.choice(JWTAlgorithm.allCases.map(\.rawValue))), required: true,
                "The signature algorithms a token may use (none is never accepted); HS* need secret_file, the others a JWKS."),
            Field("issuers", .array(.string), default: "any", "Accepted iss values."),
            Field("audiences", .array(.string), default: "any", "Accepted aud values; the token's aud must contain one."),
            Field("leeway", .duration, default: "\"0s\"", "Clock skew allowed when checking exp and nbf."),
            Field("jwks_file", .string, "A JWKS file (relative to this file) with the public keys, read by the master on every reload."),
            Field("jwks_url", .string,
                "A JWKS the master fetches (https, or http to a loopback address) every jwks_refresh, keeping the last good keys when a fetch fails."),
            Field("jwks_refresh", .duration, default: "\"5m\"", "How often jwks_url is fetched again."),
            Field("secret_file", .string,
                "The HMAC secret of HS* tokens (relative to this file; a final newline is not part of it); at least as long as the hash (32, 48, 64 bytes)."),
            Field("header", .string, default: "\"Authorization\"",
                "The request header that carries the token (after \"Bearer \" when it is Authorization)."),
            Field("max_token_size", .size, default: "\"8KiB\"", "Longer tokens are refused before any decoding."),
            Field("forward_claims", .map(.string), default: "{}",
                "Claims sent upstream as request headers: { sub = \"X-User\" }; a client's own copies of those headers are removed."),
            Field("require_claims", .map(.string), default: "{}",
                "Claims a valid token must have, else 403: { scope = \"admin\" } (equal, or an array or space-separated string containing the value)."),
        ])

    public static let ipRulesFilter = Table(
        "[filters.NAME], kind = ip_rules",
        [
            kindField(.ipRules, "Client networks allowed and denied; a refused client gets 403 and never reaches an upstream."),
            Field("allow", .array(.string), default: "[]",
                "Networks or addresses (\"10.0.0.0/8\", \"::1\"); when not empty, every other client is refused."),
            Field("deny", .array(.string), default: "[]", "Networks or addresses refused, even when allow has them too."),
        ])

    public static let hmacSignatureFilter = Table(
        "[filters.NAME], kind = hmac_signature",
        [
            kindField(.hmacSignature,
                "A webhook signature: the HMAC of the whole request body under a shared secret must be the one in "
                    + "header, else 403; the body is held back until it is checked, and neither a refused request "
                    + "nor its body reaches an upstream."),
            Field("header", .string, required: true,
                "The request field with the signature (X-Hub-Signature-256 for GitHub); a request with several is "
                    + "refused."),
            Field("algorithm", .choice(HMACAlgorithm.allCases.map(\.rawValue)), default: "\"sha256\"",
                "The hash of the HMAC."),
            Field("encoding", .choice(SignatureEncoding.allCases.map(\.rawValue)), default: "\"hex\"",
                "How the field writes the digest: hex (either case) or base64 (standard, padded)."),
            Field("prefix", .string, default: "\"\"",
                "What precedes the digest in the field, compared exactly (\"sha256=\" for GitHub)."),
            Field("secret_file", .string, required: true,
                "The shared secret (relative to this file; a final newline is not part of it), read by the master "
                    + "at start and on every reload; never empty."),
            Field("max_body", .size, default: "\"1MiB\"",
                "The most body read and signed (at most 16MiB); a longer body gets 413 and nothing goes upstream."),
        ])

    /// `"*"` or an array of strings: the type of the cors lists.
    private static let corsList = ValueType.either([.choice(["*"]), .array(.string)])

    public static let corsFilter = Table(
        "[filters.NAME], kind = cors",
        [
            kindField(.cors,
                "Cross-origin resource sharing: preflights (OPTIONS with Origin and Access-Control-Request-Method) "
                    + "are answered 204, or 403 when they ask for an origin, method or header not allowed, and never "
                    + "reach an upstream; other requests go on, and responses to allowed origins get "
                    + "Access-Control-Allow-Origin and the rest. Put it before any authentication: preflights carry "
                    + "no credentials."),
            Field("allow_origins", corsList, required: true,
                "Origins that may read responses: exact (\"https://app.example.com\", scheme and port compared "
                    + "exactly), subdomains (\"https://*.example.com\": one or more labels, not example.com "
                    + "itself), or \"*\" for any (not with allow_credentials)."),
            Field("allow_methods", corsList, default: "[\"GET\", \"HEAD\", \"POST\"]",
                "Methods a preflight may ask for (case-sensitive), or \"*\"."),
            Field("allow_headers", corsList, default: "[]",
                "Request headers a preflight may ask for (any case; Content-Type: application/json needs "
                    + "\"Content-Type\"), or \"*\" (the names asked for are echoed)."),
            Field("expose_headers", corsList, default: "[]",
                "Response headers scripts may read beyond the safelisted ones, or \"*\" (not with "
                    + "allow_credentials)."),
            Field("allow_credentials", .boolean, default: "false",
                "Scripts may send cookies and HTTP authentication and read the answers "
                    + "(Access-Control-Allow-Credentials: true); needs listed origins."),
            Field("max_age", .duration, default: "none",
                "How long a browser keeps a preflight's answer (Access-Control-Max-Age, whole seconds, at most "
                    + "24h; Chromium keeps at most 2h); none: the browser's default, 5s."),
            Field("allow_private_network", .boolean, default: "false",
                "Answer Private Network Access preflights (Access-Control-Request-Private-Network: true, a public "
                    + "site reaching a private address) with Access-Control-Allow-Private-Network: true; "
                    + "without it they get 403."),
        ])
}
