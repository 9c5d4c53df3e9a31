// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[filters.NAME]` and the `filters` lists of routes and listeners: decoding of each kind, the chains, and
/// where each problem is reported.

/// A directory with the files filters read (htpasswd, JWKS, secret), made once per test process.
private let directory: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("jester-filters-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    let files = [
        "users.htpasswd": """
            # staff
            alice:$2y$10$ru3z/x8UUm8gJ.ObWxDef.GMj2U95sLMlwBBh/xZKxbgUUaVPCbLS

            bob:$6$saltsalt$\(String(repeating: "b", count: 86))
            carol:$5$rounds=5000$salt$\(String(repeating: "c", count: 43))

            """,
        "sha1.htpasswd": "alice:$2b$10$ru3z/x8UUm8gJ.ObWxDef.GMj2U95sLMlwBBh/xZKxbgUUaVPCbLS\nbob:{SHA}fEqNCco3Yq9h5ZUglD3CZJT4lBs=\n",
        "keys.jwks": #"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        "not.jwks": #"{"key": []}"#,
        "hs.key": String(repeating: "k", count: 64) + "\n",
        "short.key": "tooshort\n",
        "redis.password": "door key\r\n",
        "empty.password": "\n",
    ]
    for (name, content) in files {
        FileManager.default.createFile(atPath: path + "/" + name, contents: Data(content.utf8))
    }
    return path
}()

private let listener = """
    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    [upstreams.app]
    targets = ["127.0.0.1:9000"]

    """

private func load(_ text: String) -> Result<Configuration, ConfigError> {
    do {
        return .success(try ConfigLoader(environment: [:]).load(text: text, file: directory + "/jester.toml"))
    } catch {
        return .failure(error)
    }
}

/// The diagnostics of a configuration that must fail.
private func errors(_ text: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [ConfigDiagnostic] {
    guard case .failure(let error) = load(text) else {
        Issue.record("accepted an invalid configuration", sourceLocation: sourceLocation)
        return []
    }
    return error.diagnostics
}

/// Where `needle` first occurs in `text` (1-based line and column), as a diagnostic would say.
private func place(of needle: String, in text: String, occurrence: Int = 1) -> JesterConfig.SourceLocation {
    var range = text.range(of: needle)!
    for _ in 1..<occurrence { range = text.range(of: needle, range: range.upperBound..<text.endIndex)! }
    let before = text[..<range.lowerBound]
    let lineStart = before.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
    return JesterConfig.SourceLocation(file: directory + "/jester.toml", line: before.filter { $0 == "\n" }.count + 1,
        column: text.distance(from: lineStart, to: range.lowerBound) + 1)
}

private func expectError(
    _ text: String, at needle: String, occurrence: Int = 1, containing message: String,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    let diagnostics = errors(text, sourceLocation: sourceLocation)
    let expected = place(of: needle, in: text, occurrence: occurrence)
    #expect(
        diagnostics.contains { $0.location == expected && $0.message.contains(message) },
        "wanted \(expected): …\(message)…; got \(diagnostics.map(\.description))", sourceLocation: sourceLocation)
}

@Test func decodesEveryKindOfFilter() throws {
    let configuration = try load(listener + """
        [filters.limit]
        kind = "rate_limit"
        rate = 100
        per = "2s"
        burst = 20
        key = ["client_address", "route", "header:X-Api-Key", "claim:sub"]
        scope = "cluster"
        delay = 5
        status = 503
        redis = { address = "[::1]:6379", timeout = "20ms", pool_size = 2, on_failure = "deny", key_prefix = "t:" }

        [filters.users]
        kind = "basic_auth"
        realm = "staff"
        htpasswd = "users.htpasswd"

        [filters.token]
        kind = "jwt"
        algorithms = ["EdDSA", "HS512"]
        issuers = ["https://issuer.example"]
        audiences = ["api"]
        leeway = "30s"
        jwks_file = "keys.jwks"
        secret_file = "hs.key"
        header = "X-Token"
        max_token_size = "4KiB"
        forward_claims = { sub = "X-User", email = "X-User-Email" }
        require_claims = { scope = "admin" }

        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8", "::1"]
        deny = ["10.9.0.0/16"]

        [[routes]]
        path_prefix = "/"
        upstream = "app"
        filters = ["office", "users", "token", "limit"]
        """).get()
    #expect(configuration.filters.map(\.name) == ["limit", "office", "token", "users"])
    #expect(configuration.warnings.isEmpty)
    guard case .rateLimit(let limit) = configuration.filter(named: "limit")?.kind else {
        Issue.record("not a rate limit")
        return
    }
    #expect(limit.rate == 100 && limit.per == .seconds(2) && limit.burst == 20 && limit.delay == 5 && limit.status == 503)
    #expect(limit.key == [.clientAddress, .route, .header("X-Api-Key"), .claim("sub")])
    #expect(limit.scope == .cluster)
    // In nginx's (and GCRA's) terms: burst=25 delay=20.
    #expect(limit.toleratedExcess == 25 && limit.undelayedExcess == 20)
    #expect(limit.redis == RedisSettings(address: SocketAddressSpec(host: "::1", port: 6379), timeout: .milliseconds(20),
        poolSize: 2, onFailure: .deny, keyPrefix: "t:"))
    guard case .basicAuth(let auth) = configuration.filter(named: "users")?.kind else {
        Issue.record("not basic auth")
        return
    }
    #expect(auth.realm == "staff" && auth.htpasswdFile == directory + "/users.htpasswd")
    #expect(auth.htpasswd.contains("alice:$2y$10$"))
    guard case .jwt(let jwt) = configuration.filter(named: "token")?.kind else {
        Issue.record("not jwt")
        return
    }
    #expect(jwt.algorithms == [.edDSA, .hs512])
    #expect(jwt.issuers == ["https://issuer.example"] && jwt.audiences == ["api"] && jwt.leeway == .seconds(30))
    #expect(jwt.jwksFile == directory + "/keys.jwks" && jwt.jwks?.isEmpty == false)
    #expect(jwt.secret == Data(String(repeating: "k", count: 64).utf8), "the final newline is not part of the secret")
    #expect(jwt.header == "X-Token" && jwt.maxTokenSize == 4096)
    #expect(jwt.forwardClaims == [ClaimHeader(claim: "email", header: "X-User-Email"), ClaimHeader(claim: "sub", header: "X-User")])
    #expect(jwt.requireClaims == [ClaimRequirement(claim: "scope", value: "admin")])
    #expect(configuration.filter(named: "office")?.kind == .ipRules(IPRuleSettings(allow: ["10.0.0.0/8", "::1"], deny: ["10.9.0.0/16"])))
}

@Test func appliesTheDefaultsOfARateLimit() throws {
    let configuration = try load(listener + """
        [filters.limit]
        kind = "rate_limit"
        rate = 10

        [[routes]]
        upstream = "app"
        filters = ["limit"]
        """).get()
    #expect(configuration.filter(named: "limit")?.kind == .rateLimit(RateLimitSettings(rate: 10)))
    #expect(RateLimitSettings(rate: 10).per == .seconds(1) && RateLimitSettings(rate: 10).key == [.clientAddress])
}

@Test func aChainIsTheListenersFiltersThenTheRoutes() throws {
    let configuration = try load("""
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"
        filters = ["office", "limit"]

        [[listeners]]
        name = "internal"
        address = "127.0.0.1:8081"

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]

        [filters.limit]
        kind = "rate_limit"
        rate = 10

        [filters.token]
        kind = "jwt"
        algorithms = ["HS256"]
        secret_file = "hs.key"

        [[routes]]
        upstream = "app"
        filters = ["token"]
        """).get()
    let route = configuration.routes[0]
    #expect(route.filters == ["token"])
    #expect(configuration.filterChain(for: route, listener: "web").map(\.name) == ["office", "limit", "token"])
    #expect(configuration.filterChain(for: route, listener: "internal").map(\.name) == ["token"])
    #expect(configuration.listeners[1].filters == nil)
}

@Test func anUnknownKindIsAnErrorAtKind() {
    let text = listener + "[filters.x]\nkind = \"rate_limits\"\nrate = 1\n"
    expectError(text, at: "kind = ", containing: "did you mean \"rate_limit\"?")
    expectError(listener + "[filters.x]\nrate = 1\n", at: "[filters.x]", containing: "missing 'kind'")
}

@Test func keysThatBelongToAnotherKindAreErrors() {
    let text = listener + """
        [filters.users]
        kind = "basic_auth"
        htpasswd = "users.htpasswd"
        burst = 3
        colour = "red"
        """
    expectError(text, at: "burst", containing: "'burst' is a key of rate_limit filters, not of basic_auth ones")
    expectError(text, at: "colour", containing: "unknown key 'colour' in [filters.users] (kind \"basic_auth\")")
}

@Test func anUnknownFilterNameIsAnErrorAtTheListEntry() {
    let text = """
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"
        filters = ["limit", "nope"]

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [filters.limit]
        kind = "rate_limit"
        rate = 10

        [[routes]]
        upstream = "app"
        filters = ["limitt"]
        """
    expectError(text, at: "\"nope\"", containing: "listener 'web' names filter 'nope', which is not defined")
    expectError(text, at: "\"limitt\"", containing: "route 'route-1' names filter 'limitt', which is not defined; did you mean 'limit'?")
}

@Test func aFilterListedTwiceInOneChainIsAnError() {
    let base = """
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"
        filters = ["limit"]

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [filters.limit]
        kind = "rate_limit"
        rate = 10

        """
    expectError(base + "[[routes]]\nupstream = \"app\"\nfilters = [\"limit\"]\n", at: "\"limit\"", occurrence: 2,
        containing: "filter 'limit' is already in the chain of route 'route-1' on listener 'web'")
    let twice = listener + "[filters.limit]\nkind = \"rate_limit\"\nrate = 10\n[[routes]]\nupstream = \"app\"\nfilters = [\"limit\", \"limit\"]\n"
    expectError(twice, at: "\"limit\"", occurrence: 2, containing: "already in the chain")
}

@Test func rateLimitValuesAreChecked() {
    let text = listener + """
        [filters.limit]
        kind = "rate_limit"
        rate = 0
        key = ["client_address", "cookie:x"]
        [[routes]]
        upstream = "app"
        filters = ["limit"]
        """
    expectError(text, at: "rate = 0", containing: "'rate' must be from 1")
    expectError(text, at: "\"cookie:x\"", containing: "'cookie:x' is not a key part")
}

@Test func clusterScopeAndRedisComeTogether() {
    let cluster = listener + "[filters.limit]\nkind = \"rate_limit\"\nrate = 10\nscope = \"cluster\"\n"
        + "[[routes]]\nupstream = \"app\"\nfilters = [\"limit\"]\n"
    expectError(cluster, at: "scope = ", containing: "scope = \"cluster\" needs 'redis'")
    let instance = listener + "[filters.limit]\nkind = \"rate_limit\"\nrate = 10\n"
        + "redis = { address = \"127.0.0.1:6379\" }\n[[routes]]\nupstream = \"app\"\nfilters = [\"limit\"]\n"
    expectError(instance, at: "redis = ", containing: "'redis' is used with scope = \"cluster\" only")
    // A host name is fine: the master looks it up, like an upstream target's.
    let named = listener + "[filters.limit]\nkind = \"rate_limit\"\nrate = 10\nscope = \"cluster\"\n"
        + "redis = { address = \"redis.local:6379\" }\n[[routes]]\nupstream = \"app\"\nfilters = [\"limit\"]\n"
    guard case .rateLimit(let limit)? = (try? load(named).get())?.filter(named: "limit")?.kind else {
        Issue.record("a Redis host name was refused")
        return
    }
    #expect(limit.redis?.address == SocketAddressSpec(host: "redis.local", port: 6379))
    #expect(limit.redis?.password == nil && limit.redis?.database == 0)
}

/// `redis = { password_file, username, database }`: read by the loader, checked, never shown.
private func clusterLimit(_ redis: String) -> String {
    listener + "[filters.limit]\nkind = \"rate_limit\"\nrate = 10\nscope = \"cluster\"\n"
        + "redis = { address = \"127.0.0.1:6379\"\(redis) }\n[[routes]]\nupstream = \"app\"\nfilters = [\"limit\"]\n"
}

@Test func redisCredentialsAreReadCheckedAndRedacted() throws {
    let text = clusterLimit(", username = \"limiter\", password_file = \"redis.password\", database = 3")
    let configuration = try load(text).get()
    guard case .rateLimit(let limit) = configuration.filter(named: "limit")?.kind, let redis = limit.redis else {
        Issue.record("not a cluster rate limit")
        return
    }
    // The final line end is not part of the password; inner blanks are.
    #expect(redis.password == "door key" && redis.username == "limiter" && redis.database == 3)
    #expect(redis.passwordFile == directory + "/redis.password")
    // The dump names the file, never the password, and loads back the same from elsewhere.
    let dump = configuration.renderTOML()
    #expect(dump.contains("password_file = \"\(directory)/redis.password\"") && !dump.contains("door key"))
    let dumped = try ConfigLoader(environment: [:]).load(text: dump, file: "/elsewhere/dump.toml")
    #expect(dumped.filters == configuration.filters && dumped.hash == configuration.hash)
    guard case .rateLimit(let redacted) = configuration.redactingSecrets().filter(named: "limit")?.kind else {
        Issue.record("redaction lost the filter")
        return
    }
    #expect(redacted.redis?.password == ConfigRedaction.placeholder)
    let graph = ConfigGraph(configuration)
    let settings = try #require(graph.filters.first { $0.name == "limit" }).settings
    #expect(settings.first { $0.key == "password" }?.value == ConfigRedaction.placeholder)
    #expect(settings.first { $0.key == "username" }?.value == "limiter")
    #expect(settings.first { $0.key == "database" }?.value == "3")
    for format in ConfigGraph.Format.allCases { #expect(!graph.render(format).contains("door key")) }
    for key in ["\"password_file\"", "\"username\"", "\"database\""] {
        #expect(ConfigSchema.jsonSchema().contains(key))
    }
}

@Test func redisCredentialsMustMakeSense() {
    expectError(clusterLimit(", username = \"limiter\""), at: "username",
        containing: "'username' needs 'password_file'")
    expectError(clusterLimit(", username = \"two words\", password_file = \"redis.password\""), at: "username",
        containing: "must be non-empty, without blanks or controls")
    expectError(clusterLimit(", password_file = \"empty.password\""), at: "password_file",
        containing: "empty.password is empty")
    expectError(clusterLimit(", password_file = \"missing.password\""), at: "password_file",
        containing: "missing.password")
    expectError(clusterLimit(", database = 65536"), at: "database", containing: "'database' must be from 0 to 65535")
}

/// Settings encoded before `database` existed (an older binary's, in a binary upgrade) still decode.
@Test func redisSettingsWithoutADatabaseStillDecode() throws {
    let settings = RedisSettings(address: SocketAddressSpec(host: "127.0.0.1", port: 6379))
    var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(settings)) as! [String: Any]
    object["database"] = nil
    let decoded = try JSONDecoder().decode(RedisSettings.self, from: JSONSerialization.data(withJSONObject: object))
    #expect(decoded == settings)
}

@Test func jwtNeedsKeysThatFitItsAlgorithms() {
    let route = "[[routes]]\nupstream = \"app\"\nfilters = [\"token\"]\n"
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\n" + route, at: "[filters.token]",
        containing: "a jwt filter needs 'jwks_file', 'jwks_url' or 'secret_file'")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"RS256\", \"HS256\"]\njwks_file = \"keys.jwks\"\n" + route,
        at: "algorithms", containing: "HS256 needs 'secret_file'")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"ES256\"]\nsecret_file = \"hs.key\"\n" + route,
        at: "algorithms", containing: "ES256 needs 'jwks_file' or 'jwks_url'")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"none\"]\nsecret_file = \"hs.key\"\n" + route,
        at: "\"none\"", containing: "alg none")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"HS512\"]\nsecret_file = \"short.key\"\n" + route,
        at: "secret_file", containing: "HS512 needs at least 64")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\njwks_file = \"not.jwks\"\n" + route,
        at: "jwks_file", containing: "is not a JWKS: no \"keys\" array")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\njwks_url = \"http://idp.example/jwks\"\n" + route,
        at: "jwks_url", containing: "'jwks_url' must be https")
    expectError(listener + "[filters.token]\nkind = \"jwt\"\nalgorithms = []\njwks_file = \"keys.jwks\"\n" + route,
        at: "algorithms", containing: "'algorithms' needs at least one algorithm")
}

@Test func aClaimKeyNeedsAJWTFilterEarlierInTheChain() throws {
    let filters = listener + """
        [filters.token]
        kind = "jwt"
        algorithms = ["EdDSA"]
        jwks_url = "https://idp.example/jwks.json"

        [filters.per_user]
        kind = "rate_limit"
        rate = 10
        key = ["claim:sub"]

        """
    let wrongOrder = filters + "[[routes]]\nupstream = \"app\"\nfilters = [\"per_user\", \"token\"]\n"
    expectError(wrongOrder, at: "\"per_user\",", containing: "keys on claim:sub, but no jwt filter comes before it")
    let configuration = try load(filters + "[[routes]]\nupstream = \"app\"\nfilters = [\"token\", \"per_user\"]\n").get()
    #expect(configuration.routes[0].filters == ["token", "per_user"])
}

@Test func filesThatCannotBeReadAreErrorsWithTheirPath() {
    let text = listener + "[filters.users]\nkind = \"basic_auth\"\nhtpasswd = \"missing.htpasswd\"\n"
        + "[[routes]]\nupstream = \"app\"\nfilters = [\"users\"]\n"
    expectError(text, at: "htpasswd = \"missing", containing: "cannot read \(directory)/missing.htpasswd")
}

@Test func anUnacceptedHtpasswdHashIsAnErrorAtItsLine() {
    let text = listener + "[filters.users]\nkind = \"basic_auth\"\nhtpasswd = \"sha1.htpasswd\"\n"
        + "[[routes]]\nupstream = \"app\"\nfilters = [\"users\"]\n"
    let diagnostics = errors(text)
    #expect(diagnostics.count == 1)
    #expect(diagnostics.first?.location == JesterConfig.SourceLocation(file: directory + "/sha1.htpasswd", line: 2, column: 1))
    #expect(diagnostics.first?.message.contains("user 'bob': SHA-1 ({SHA}) is not accepted; use bcrypt") == true)
}

@Test func badNetworksAreErrorsAtTheirEntry() {
    let text = listener + "[filters.office]\nkind = \"ip_rules\"\nallow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n"
        + "[[routes]]\nupstream = \"app\"\nfilters = [\"office\"]\n"
    expectError(text, at: "\"10.0.0.0/33\"", containing: "'10.0.0.0/33' is not an address or network")
    expectError(listener + "[filters.office]\nkind = \"ip_rules\"\n[[routes]]\nupstream = \"app\"\nfilters = [\"office\"]\n",
        at: "[filters.office]", containing: "needs 'allow' or 'deny'")
}

@Test func tcpListenersHaveNoFilters() {
    let text = """
        [[listeners]]
        name = "redis"
        address = "127.0.0.1:6380"
        protocol = "tcp"
        upstream = "app"
        filters = ["office"]

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]
        """
    expectError(text, at: "filters = [\"office\"]", containing: "tcp listener 'redis' cannot have filters")
}

@Test func anUnusedFilterIsAWarningNotAnError() throws {
    let text = listener + "[filters.spare]\nkind = \"rate_limit\"\nrate = 10\n[[routes]]\nupstream = \"app\"\n"
    let configuration = try load(text).get()
    #expect(configuration.warnings.map(\.description) == [
        "\(place(of: "[filters.spare]", in: text)): warning: filter 'spare' is defined, but no route or listener uses it"
    ])
    // Warnings carry places (lines shift with comments), so they are not part of the hash.
    let shifted = try load("# a comment\n" + text).get()
    #expect(shifted.hash == configuration.hash)
}

@Test func filtersSurviveADumpAndTheSchema() throws {
    let configuration = try load(listener + """
        [filters.limit]
        kind = "rate_limit"
        rate = 100
        key = ["header:X-Key", "route"]
        scope = "cluster"
        redis = { address = "127.0.0.1:6379" }

        [filters.users]
        kind = "basic_auth"
        htpasswd = "users.htpasswd"

        [filters.token]
        kind = "jwt"
        algorithms = ["RS256"]
        jwks_url = "https://idp.example/jwks.json"
        jwks_refresh = "1m"
        forward_claims = { sub = "X-User" }

        [[routes]]
        upstream = "app"
        filters = ["users", "token", "limit"]
        """).get()
    let dump = configuration.renderTOML()
    #expect(dump.contains("[filters.limit]\nkind = \"rate_limit\"\nrate = 100\nper = \"1s\""))
    #expect(dump.contains("filters = [\"users\", \"token\", \"limit\"]"))
    let dumped = try ConfigLoader(environment: [:]).load(text: dump, file: "/elsewhere/dump.toml")
    #expect(dumped.hash == configuration.hash)
    #expect(dumped.filters == configuration.filters)
    let schema = ConfigSchema.jsonSchema()
    for key in ["\"jwks_url\"", "\"on_failure\"", "\"htpasswd\"", "\"oneOf\"", "\"rate_limit\""] {
        #expect(schema.contains(key))
    }
    #expect(ConfigSchema.manualReference().contains(".SS [filters.NAME], kind = jwt"))
}

/// A configuration encoded before filters existed (an older binary's, in a binary upgrade) still decodes.
@Test func settingsWithoutFilterFieldsStillDecode() throws {
    let configuration = try load(listener + "[[routes]]\nupstream = \"app\"\n").get()
    var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)) as! [String: Any]
    object["filters"] = nil
    object["warnings"] = nil
    object["routes"] = (object["routes"] as! [[String: Any]]).map { route in
        var route = route
        route["filters"] = nil
        return route
    }
    let decoded = try JSONDecoder().decode(Configuration.self, from: JSONSerialization.data(withJSONObject: object))
    #expect(decoded == configuration)
}

@Test func htpasswdLinesAreChecked() {
    let bcrypt = "$2y$10$ru3z/x8UUm8gJ.ObWxDef.GMj2U95sLMlwBBh/xZKxbgUUaVPCbLS"
    let result = HtpasswdCheck.check("""
        # comment

        alice:\(bcrypt)
        bob:$apr1$abc$def
        carol
        alice:\(bcrypt)
        dave:$2y$10$short
        erin:plaintext
        frank:$1$salt$hash
        """)
    #expect(result.users == ["alice"])
    #expect(result.problems.map(\.line) == [4, 5, 6, 7, 8, 9])
    #expect(result.problems[0].message.contains("Apache MD5 ($apr1$) is not accepted"))
    #expect(result.problems[1].message == "not a user:hash line")
    #expect(result.problems[2].message == "user 'alice' is already on line 3")
    #expect(result.problems[3].message == "user 'dave': a malformed bcrypt hash")
    #expect(result.problems[4].message.contains("plain text or DES crypt"))
    #expect(result.problems[5].message.contains("MD5-crypt ($1$)"))
    #expect(HtpasswdCheck.check("a:\(bcrypt)\r\n").problems.isEmpty, "CRLF line ends are fine")
}
