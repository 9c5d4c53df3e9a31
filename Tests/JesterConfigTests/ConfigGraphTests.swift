// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `ConfigGraph` (`jester diag`): routes in the order workers try them, filter chains in run order, split shares,
/// the loader's never-matching finding, secrets redacted in every format, and each format's shape.

/// The HMAC secret and the password hash the graph must never show.
private let secret = "diag-hmac-secret-" + String(repeating: "s", count: 40)
private let passwordHash = "$2y$10$ru3z/x8UUm8gJ.ObWxDef.GMj2U95sLMlwBBh/xZKxbgUUaVPCbLS"

/// A directory holding the files the filters read, made once per test process.
private let directory: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("jester-graph-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: path + "/hs.key", contents: Data((secret + "\n").utf8))
    _ = FileManager.default.createFile(atPath: path + "/users.htpasswd", contents: Data("alice:\(passwordHash)\n".utf8))
    return path
}()

private func graph(_ text: String) throws -> ConfigGraph {
    ConfigGraph(try ConfigLoader(environment: [:]).load(text: text, file: directory + "/jester.toml"))
}

private let pools = """
    [upstreams.app]
    targets = ["127.0.0.1:9000", { address = "127.0.0.1:9001", weight = 3 },
        { address = "127.0.0.1:9002", backup = true }]
    balance = "hash"
    hash_key = "header:X-User"
    health_check = { path = "/healthz" }

    [upstreams.canary]
    targets = ["127.0.0.1:9100"]

    """

private let web = """
    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    """

@Test func routesAreListedInTheOrderWorkersTryThem() throws {
    let built = try graph(web + pools + """
        [[routes]]
        name = "catch-all"
        upstream = "app"

        [[routes]]
        name = "api"
        path_prefix = "/api/"
        upstream = "app"

        [[routes]]
        name = "api-get"
        path_prefix = "/api/"
        methods = ["GET"]
        upstream = "app"

        [[routes]]
        name = "wild"
        hosts = ["*.example.com"]
        upstream = "app"

        [[routes]]
        name = "exact-host"
        hosts = ["www.example.com"]
        upstream = "app"

        [[routes]]
        name = "maintenance"
        match_headers = [{ name = "X-Maintenance", value = "on" }]
        priority = 10
        respond = { status = 503, body = "down" }

        [[routes]]
        name = "api-also"
        path_prefix = "/api/"
        match_query = [{ name = "v", value = "2" }]
        upstream = "app"

        """)
    let routes = try #require(built.listeners.first).routes
    // Priority first; then exact host, wildcard, any; then the longest prefix; then more conditions; then file
    // order (api-get and api-also have one condition each).
    #expect(routes.map(\.name) == ["maintenance", "exact-host", "wild", "api-get", "api-also", "api", "catch-all"])
    #expect(routes.map(\.index) == [6, 5, 4, 3, 7, 2, 1])
    #expect(routes[0].priority == 10 && routes[0].conditions == ["header X-Maintenance = on"])
    #expect(routes[3].conditions == ["method GET"] && routes[4].conditions == ["query v = 2"])
    #expect(routes[0].action == .respond(status: 503))
}

@Test func theOrderOfSpecificityFollowsTheRouteTable() throws {
    // An exact path outranks a path regex, which outranks several plain conditions (RouteConditions.specificity).
    let built = try graph(web + pools + """
        [[routes]]
        name = "three-conditions"
        path_prefix = "/x"
        methods = ["GET"]
        match_headers = [{ name = "A", present = true }, { name = "B", present = false }]
        upstream = "app"

        [[routes]]
        name = "regex"
        path_prefix = "/x"
        path_regex = "^/x[0-9]+$"
        upstream = "app"

        [[routes]]
        name = "exact"
        path = "/x"
        upstream = "app"

        """)
    let routes = try #require(built.listeners.first).routes
    #expect(routes.map(\.name) == ["exact", "regex", "three-conditions"])
    #expect(routes[0].exactPath && routes[1].conditions == ["path ~ ^/x[0-9]+$"])
    #expect(routes[2].conditions == ["method GET", "header A present", "header B absent"])
}

@Test func filterChainsRunTheListenersFiltersFirst() throws {
    let built = try graph("""
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"
        filters = ["office", "per_client"]

        [[listeners]]
        name = "plain"
        address = "127.0.0.1:8081"

        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]

        [filters.per_client]
        kind = "rate_limit"
        rate = 10

        [filters.staff]
        kind = "basic_auth"
        realm = "staff"
        htpasswd = "users.htpasswd"

        """ + pools + """
        [[routes]]
        name = "admin"
        filters = ["staff"]
        upstream = "app"

        """)
    let chains = built.listeners.map { $0.routes.map(\.filters) }
    #expect(chains[0] == [[
        .init(name: "office", kind: .ipRules, from: .listener),
        .init(name: "per_client", kind: .rateLimit, from: .listener),
        .init(name: "staff", kind: .basicAuth, from: .route),
    ]])
    #expect(chains[1] == [[.init(name: "staff", kind: .basicAuth, from: .route)]])
    #expect(built.listeners[0].filters == ["office", "per_client"])
    let text = built.text()
    #expect(text.contains(
        "filters: office (ip_rules, listener) -> per_client (rate_limit, listener) -> staff (basic_auth)"))
}

@Test func splitsCarryWeightsSharesAndKey() throws {
    let built = try graph(web + pools + """
        [[routes]]
        name = "canary"
        split = [{ upstream = "app", weight = 2 }, { upstream = "canary", weight = 1 }]
        split_key = "cookie:uid"

        """)
    let route = try #require(built.listeners.first?.routes.first)
    #expect(route.action == .split(shares: [
        .init(upstream: "app", weight: 2, percent: 66.7), .init(upstream: "canary", weight: 1, percent: 33.3),
    ], key: "cookie:uid"))
    let app = try #require(built.upstream(named: "app"))
    #expect(app.balance == "hash" && app.hashKey == "header:X-User" && app.healthCheck == "http /healthz")
    #expect(app.targets == [
        .init(address: "127.0.0.1:9000", weight: 1, backup: false, maxRequests: nil),
        .init(address: "127.0.0.1:9001", weight: 3, backup: false, maxRequests: nil),
        .init(address: "127.0.0.1:9002", weight: 1, backup: true, maxRequests: nil),
    ])
    let text = built.text()
    #expect(text.contains("-> split by cookie:uid"))
    #expect(text.contains("66.7% (weight 2) upstream app (hash header:X-User, health http /healthz)"))
    #expect(text.contains("127.0.0.1:9002 weight 1, backup"))
    let dot = built.dot()
    #expect(dot.contains("\"route 0.1\" -> \"upstream canary\" [label=\"33.3%\"];"))
    #expect(dot.contains("[label=\"127.0.0.1:9002\\nweight 1, backup\", style=\"rounded,dashed\"];"))
}

@Test func aRouteThatCanNeverMatchIsFlaggedWithTheLoadersFinding() throws {
    let configuration = try ConfigLoader(environment: [:]).load(text: web + pools + """
        [[routes]]
        name = "first"
        path_prefix = "/app/"
        upstream = "app"

        [[routes]]
        name = "copy"
        path_prefix = "/app/"
        upstream = "canary"

        [[routes]]
        name = "narrower"
        path_prefix = "/app/"
        methods = ["POST"]
        upstream = "canary"

        """, file: directory + "/jester.toml")
    let built = ConfigGraph(configuration)
    let routes = try #require(built.listeners.first).routes
    #expect(routes.map(\.name) == ["narrower", "first", "copy"])
    #expect(routes.map(\.shadowedBy) == [nil, nil, "first"])
    // The same finding as the loader's warning, which the graph carries too.
    #expect(configuration.warnings.count == 1)
    #expect(configuration.warnings.first?.message.hasPrefix("route 'copy' can never match") == true)
    #expect(built.warnings == configuration.warnings.map(\.description))
    #expect(built.text().contains("!! never matches: route 'first' takes every request it could"))
    #expect(built.dot().contains("never matches: 'first' first\", style=\"rounded,dashed\", color=red];"))
    let json = try object(built.json())
    let shadowed = (json["listeners"] as? [[String: Any]])?.first?["routes"] as? [[String: Any]]
    #expect(shadowed?.map { $0["shadowed_by"] as? String } == [nil, nil, "first"])
}

@Test func tcpAndRedirectListenersHaveNoRoutes() throws {
    let built = try graph(web + pools + """
        [[listeners]]
        name = "db"
        address = "127.0.0.1:5432"
        protocol = "tcp"
        upstream = "canary"

        [[listeners]]
        name = "http"
        address = "127.0.0.1:8000"
        redirect_to_https = 8443

        [[routes]]
        name = "everywhere"
        upstream = "app"

        """)
    #expect(built.listeners.map(\.routes.count) == [1, 0, 0])
    #expect(built.listeners[1].protocolName == .tcp && built.listeners[1].upstream == "canary")
    #expect(!built.listeners[1].http2 && built.listeners[0].http2)
    #expect(built.listeners[2].redirectToHTTPS == 8443)
    let text = built.text()
    #expect(text.contains(
        "listener db 127.0.0.1:5432 (tcp)\n  -> upstream canary (round_robin)\n       127.0.0.1:9100 weight 1"))
    #expect(text.contains("-> redirect every request to HTTPS, port 8443"))
}

/// Every secret the loader holds: a JWT HMAC secret, htpasswd hashes, and inline credentials in header values.
private let secrets = web + pools + """
    [filters.token]
    kind = "jwt"
    algorithms = ["HS256"]
    secret_file = "hs.key"

    [filters.staff]
    kind = "basic_auth"
    realm = "staff"
    htpasswd = "users.htpasswd"

    [[routes]]
    name = "api"
    filters = ["token", "staff"]
    match_headers = [{ name = "X-Api-Key", value = "inline-api-key-1" }, { name = "X-Env", value = "blue" }]
    request_headers = { set = { "Authorization" = "Bearer inline-upstream-token-2", "X-Gateway" = "jester" } }
    upstream = "app"

    [[routes]]
    name = "login"
    path_prefix = "/login"
    respond = { status = 200, body = "ok", headers = { "Set-Cookie" = "sid=inline-cookie-3" } }

    """

@Test func secretsAreRedactedInEveryFormat() throws {
    let built = try graph(secrets)
    for format in ConfigGraph.Format.allCases {
        let output = built.render(format)
        for leaked in [secret, passwordHash, "inline-api-key-1", "inline-upstream-token-2", "inline-cookie-3"] {
            #expect(!output.contains(leaked), "\(format) shows \(leaked)")
        }
    }
    // What is not secret stays, and each secret says it was there.
    let text = built.text()
    #expect(text.contains("secret_file = \"\(directory)/hs.key\""))
    #expect(text.contains("token (jwt): algorithms HS256; secret_file \(directory)/hs.key; secret (redacted)"))
    #expect(text.contains("htpasswd \(directory)/users.htpasswd"))
    #expect(text.contains("header X-Api-Key = (redacted), header X-Env = blue"))
    #expect(text.contains("set = { Authorization = \"(redacted)\", X-Gateway = \"jester\" }"))
    #expect(text.contains("headers = { Set-Cookie = \"(redacted)\" }"))
    let json = try object(built.json())
    let token = (json["filters"] as? [[String: Any]])?.first { $0["name"] as? String == "token" }
    #expect((token?["settings"] as? [String: String])?["secret"] == "(redacted)")
}

@Test func redactionKeepsTheConfigurationsMeaningOtherwise() throws {
    let configuration = try ConfigLoader(environment: [:]).load(text: secrets, file: directory + "/jester.toml")
    let redacted = configuration.redactingSecrets()
    #expect(redacted.hash == configuration.hash && redacted.listeners == configuration.listeners)
    #expect(redacted.upstreams == configuration.upstreams)
    #expect(redacted.routes.map(\.name) == configuration.routes.map(\.name))
    #expect(redacted.routes[0].match.headers[1] == configuration.routes[0].match.headers[1])
    #expect(ConfigRedaction.isSecret(name: "X-Auth-Token") && ConfigRedaction.isSecret(name: "proxy-authorization"))
    #expect(!ConfigRedaction.isSecret(name: "X-Env") && !ConfigRedaction.isSecret(name: "Content-Type"))
}

@Test func theJSONShapeHasEveryDocumentedKey() throws {
    let built = try graph(web + pools + """
        [[routes]]
        name = "api"
        upstream = "app"

        [[routes]]
        name = "old"
        path = "/old"
        redirect = { status = 301, location = "/new" }

        """)
    let json = try object(built.json())
    #expect(Set(json.keys) == ["format_version", "files", "hash", "config", "warnings", "listeners", "filters",
        "upstreams"])
    #expect(json["format_version"] as? Int == ConfigGraph.formatVersion)
    #expect(json["config"] as? String == built.effectiveConfiguration)
    let listener = try #require((json["listeners"] as? [[String: Any]])?.first)
    #expect(Set(listener.keys) == ["name", "address", "protocol", "tls", "http2", "redirect_to_https", "upstream",
        "filters", "routes"])
    #expect(listener["redirect_to_https"] is NSNull && listener["protocol"] as? String == "http")
    let routes = try #require(listener["routes"] as? [[String: Any]])
    #expect(Set(routes[0].keys) == ["name", "index", "priority", "hosts", "path", "exact_path", "conditions",
        "filters", "action", "shadowed_by"])
    #expect(routes[0]["name"] as? String == "old" && routes[0]["exact_path"] as? Bool == true)
    let redirect = try #require(routes[0]["action"] as? [String: Any])
    #expect(Set(redirect.keys) == ["type", "status", "location"] && redirect["type"] as? String == "redirect")
    #expect(redirect["status"] as? Int == 301 && redirect["location"] as? String == "/new")
    let proxy = try #require(routes[1]["action"] as? [String: Any])
    #expect(Set(proxy.keys) == ["type", "upstream"] && proxy["upstream"] as? String == "app")
    let pool = try #require((json["upstreams"] as? [[String: Any]])?.first)
    #expect(Set(pool.keys) == ["name", "balance", "hash_key", "protocol", "tls", "health_check", "targets"])
    let target = try #require((pool["targets"] as? [[String: Any]])?.first)
    #expect(Set(target.keys) == ["address", "weight", "backup", "max_requests"] && target["max_requests"] is NSNull)
}

@Test func dotQuotesWhateverTheConfigurationSays() throws {
    let built = try graph(web + pools + #"""
        [[routes]]
        name = "odd \"name\" \\l"
        path_regex = '^/a\d+$'
        upstream = "app"

        """#)
    let dot = built.dot()
    #expect(dot.hasPrefix("digraph jester {\n") && dot.hasSuffix("}\n"))
    #expect(dot.contains(#"route 'odd \"name\" \\l'\npath_prefix /\npath ~ ^/a\\d+$"#))
    // Every quote in the output is escaped or opens and closes a string: an even count of unescaped quotes per line.
    for line in dot.split(separator: "\n") {
        let unescaped = line.replacingOccurrences(of: "\\\\", with: "").replacingOccurrences(of: "\\\"", with: "")
        #expect(unescaped.filter { $0 == "\"" }.count % 2 == 0, "\(line)")
    }
}

private func object(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}
