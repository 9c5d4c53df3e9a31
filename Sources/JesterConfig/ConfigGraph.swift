// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore

/// The path a request takes through a configuration: listeners → routes (in match order) → filters (in run
/// order) → pools (with split weights) → targets. What `jester diag` prints as text, JSON or Graphviz DOT.
///
/// Pure: built from a `Configuration` alone, with its secrets redacted first (`redactingSecrets()`), so no
/// rendering of the graph can show one. Routes are listed as the workers try them (see `matchOrder`), and routes
/// that can never match carry the loader's own finding (`Configuration.shadowedRoutes`), so the picture and the
/// warning of `config validate` cannot disagree.
public struct ConfigGraph: Sendable, Equatable {
    /// The version of the JSON shape (`jester diag --format json`); raised when a field changes meaning or goes.
    public static let formatVersion = 1

    /// The files the configuration was read from, main file first.
    public var files: [String]
    /// The configuration's hash, as `jesterctl status` shows it.
    public var hash: String
    /// The effective configuration as `jester config dump` prints it, secrets redacted.
    public var effectiveConfiguration: String
    /// What the loader warned about (`file:line:column: warning: ...`).
    public var warnings: [String]
    public var listeners: [Listener]
    /// Every `[filters.NAME]`, by name, with its settings (secrets redacted).
    public var filters: [Filter]
    /// Every pool, by name, with its targets.
    public var upstreams: [Pool]

    /// What a listener speaks.
    public enum ListenerProtocol: String, Sendable, Equatable, Encodable {
        /// HTTP/1.1 and HTTP/2, served by routes (or all redirected to HTTPS).
        case http
        /// Raw TCP streams relayed to one pool.
        case tcp
    }

    /// One `[[listeners]]` entry and what it leads to.
    public struct Listener: Sendable, Equatable {
        public var name: String
        public var address: String
        public var protocolName: ListenerProtocol
        public var tls: Bool
        /// Whether HTTP/2 is served (false for TCP listeners).
        public var http2: Bool
        /// Every request answered with a redirect to HTTPS on this port; then there are no routes.
        public var redirectToHTTPS: Int?
        /// The pool a TCP listener relays to.
        public var upstream: String?
        /// The filters every route on this listener runs first.
        public var filters: [String]
        /// The routes on this listener, in the order they are tried.
        public var routes: [Route]
    }

    /// Where a filter of a route's chain was attached.
    public enum FilterOrigin: String, Sendable, Equatable, Encodable {
        /// The listener's `filters`: run first, on every route of the listener.
        case listener
        /// The route's own `filters`, after the listener's.
        case route
    }

    /// One filter in the chain a route runs.
    public struct FilterStep: Sendable, Equatable, Encodable {
        public var name: String
        public var kind: FilterKindName
        public var from: FilterOrigin

        public init(name: String, kind: FilterKindName, from: FilterOrigin) {
            self.name = name
            self.kind = kind
            self.from = from
        }
    }

    /// One `[[routes]]` entry as seen from one listener.
    public struct Route: Sendable, Equatable {
        public var name: String
        /// Its position in the configuration (1: the first `[[routes]]`), which breaks ties in match order.
        public var index: Int
        public var priority: Int
        /// Host patterns; empty: any host.
        public var hosts: [String]
        public var path: String
        /// Whether `path` must equal the request path (`path = `) rather than prefix it (`path_prefix = `).
        public var exactPath: Bool
        /// The further conditions, one short phrase each (`method GET|HEAD`, `header X-Env = canary`).
        public var conditions: [String]
        /// The filters a request taken by this route runs, in run order: the listener's, then the route's.
        public var filters: [FilterStep]
        public var action: Action
        /// The route that takes every request this one could, when this one can never match.
        public var shadowedBy: String?
    }

    /// What a route does with the requests it takes.
    public enum Action: Sendable, Equatable {
        case proxy(upstream: String)
        /// Shares of a weighted split, in configuration order; `key` keeps a client on one side.
        case split(shares: [SplitShare], key: String?)
        case respond(status: Int)
        case redirect(status: Int, location: String)
    }

    /// One pool of a split, with its weight and the share of requests that weight gives it.
    public struct SplitShare: Sendable, Equatable, Encodable {
        public var upstream: String
        public var weight: Int
        /// weight / total weight × 100.
        public var percent: Double

        public init(upstream: String, weight: Int, percent: Double) {
            self.upstream = upstream
            self.weight = weight
            self.percent = percent
        }
    }

    /// One `[filters.NAME]`: its kind and settings as `key → value` text.
    public struct Filter: Sendable, Equatable {
        public var name: String
        public var kind: FilterKindName
        /// The settings in the order `config dump` writes them; secrets are `ConfigRedaction.placeholder`.
        public var settings: [(key: String, value: String)]

        public static func == (lhs: Filter, rhs: Filter) -> Bool {
            lhs.name == rhs.name && lhs.kind == rhs.kind
                && lhs.settings.map(\.key) == rhs.settings.map(\.key)
                && lhs.settings.map(\.value) == rhs.settings.map(\.value)
        }
    }

    /// One `[upstreams.NAME]` and its targets.
    public struct Pool: Sendable, Equatable {
        public var name: String
        public var balance: String
        /// What `balance = "hash"` hashes; nil for other algorithms.
        public var hashKey: String?
        /// "http1" or "h2".
        public var protocolName: String
        public var tls: Bool
        /// The active health check (`http /healthz`, `tcp`); nil: none.
        public var healthCheck: String?
        public var targets: [Target]
    }

    /// One target of a pool.
    public struct Target: Sendable, Equatable {
        public var address: String
        public var weight: Int
        public var backup: Bool
        public var maxRequests: Int?

        public init(address: String, weight: Int, backup: Bool, maxRequests: Int?) {
            self.address = address
            self.weight = weight
            self.backup = backup
            self.maxRequests = maxRequests
        }
    }
}

extension ConfigGraph {
    /// The graph of `configuration`, its secrets redacted before anything is read from it.
    public init(_ configuration: Configuration) {
        let configuration = configuration.redactingSecrets()
        files = configuration.files
        hash = configuration.hash
        effectiveConfiguration = configuration.renderTOML()
        warnings = configuration.warnings.map(\.description)
        let routes = configuration.routes
        var shadowedBy: [Int: String] = [:]
        for finding in Configuration.shadowedRoutes(routes) { shadowedBy[finding.route] = routes[finding.by].name }
        listeners = configuration.listeners.map { listener in
            let onListener = routes.indices.filter { index in
                !listener.isTCP && listener.redirectToHTTPS == nil
                    && (routes[index].listeners.isEmpty || routes[index].listeners.contains(listener.name))
            }
            return Listener(
                name: listener.name, address: listener.address.description,
                protocolName: listener.isTCP ? .tcp : .http, tls: listener.tls != nil,
                http2: !listener.isTCP && listener.servesHTTP2, redirectToHTTPS: listener.redirectToHTTPS,
                upstream: listener.isTCP ? listener.upstream : nil, filters: listener.filters ?? [],
                routes: Self.matchOrder(onListener.map { routes[$0] }).map { position in
                    let index = onListener[position]
                    return Self.route(routes[index], index: index, listener: listener, configuration: configuration,
                        shadowedBy: shadowedBy[index])
                })
        }
        filters = configuration.filters.map(Self.filter)
        upstreams = configuration.upstreams.map { upstream in
            Pool(
                name: upstream.name, balance: upstream.balance,
                hashKey: upstream.balance == "hash" ? upstream.hashKey : nil,
                protocolName: upstream.protocolName ?? "http1", tls: upstream.tls != nil,
                healthCheck: upstream.healthCheck.map { $0.type == "http" ? "http \($0.path)" : $0.type },
                targets: upstream.targets.map {
                    Target(address: $0.address.description, weight: $0.weight, backup: $0.backup,
                        maxRequests: $0.maxRequests)
                })
        }
    }

    /// The pool called `name`.
    public func upstream(named name: String) -> Pool? {
        upstreams.first { $0.name == name }
    }

    /// Orders routes (given in file order) as a worker tries them for a request they could all take, as indices
    /// into `routes`:
    /// higher `priority` first (each priority is its own table); then by host, exact names before wildcards
    /// (longer suffixes first) before any host; then the longest path prefix; then the more specific conditions
    /// (`RouteConditions.specificity`, the rank the route table uses); then file order.
    ///
    /// Routes for different hosts or paths never compete for one request, so for them this order only groups
    /// the specific before the general; for routes that do compete it is the order a request meets them.
    public static func matchOrder(_ routes: [RouteSettings]) -> [Int] {
        let keys = routes.map { route -> (Int, Int, Int, Int, Int) in
            let hosts = route.hosts.map(HostPattern.init)
            let hostRank = hosts.map { pattern -> (Int, Int) in
                switch pattern {
                case .exact: return (0, 0)
                case .wildcard(let suffix): return (1, -suffix.utf8.count)
                case .any: return (2, 0)
                }
            }.min { $0 < $1 } ?? (2, 0)
            return (-route.match.priority, hostRank.0, hostRank.1, -route.pathPrefix.utf8.count,
                -specificity(route.match))
        }
        return keys.indices.sorted { keys[$0] < keys[$1] || (keys[$0] == keys[$1] && $0 < $1) }
    }

    /// The rank the worker's route table orders a route by among routes of one host and prefix: JesterCore's
    /// `RouteConditions.specificity` of conditions with the same counts (the tests of each condition do not
    /// count, so none is compiled).
    static func specificity(_ match: RouteMatch) -> Int {
        var conditions = RouteConditions()
        conditions.methods = match.methods.map { Array($0.utf8) }
        conditions.exactPath = match.exactPath
        conditions.pathPattern = match.pathRegex.flatMap { try? RoutePattern($0) }
        conditions.headers = match.headers.map { .init(name: $0.name, test: .present) }
        conditions.query = match.query.map { .init(name: $0.name, test: .present) }
        conditions.sources = match.sources.compactMap(CIDR.init)
        conditions.serverNames = (match.serverNames ?? []).map(HostPattern.init)
        conditions.clientSubject = match.clientSubject == nil ? nil : .present
        conditions.bodyPattern = match.body?.regex.flatMap { try? RoutePattern($0) }
        conditions.bodyJSON = (match.body?.json ?? []).map { (path: [$0.path], value: $0.value) }
        return conditions.specificity
    }

    private static func route(
        _ route: RouteSettings, index: Int, listener: ListenerSettings, configuration: Configuration,
        shadowedBy: String?
    ) -> Route {
        let listenerFilters = listener.filters ?? []
        let chain = configuration.filterChain(for: route, listener: listener.name)
        let steps = chain.enumerated().map { position, filter in
            FilterStep(name: filter.name, kind: filter.kind.name,
                from: position < listenerFilters.count ? .listener : .route)
        }
        let action: Action
        switch route.action {
        case .proxy(let upstream):
            action = .proxy(upstream: upstream)
        case .split(let targets, let key):
            let total = max(1, targets.reduce(0) { $0 + $1.weight })
            action = .split(
                shares: targets.map {
                    SplitShare(upstream: $0.upstream, weight: $0.weight,
                        percent: (Double($0.weight) * 1000 / Double(total)).rounded() / 10)
                },
                key: key)
        case .respond(let status, _, _):
            action = .respond(status: status)
        case .redirect(let status, let location):
            action = .redirect(status: status, location: location)
        }
        return Route(
            name: route.name, index: index + 1, priority: route.match.priority, hosts: route.hosts,
            path: route.pathPrefix, exactPath: route.match.exactPath, conditions: conditions(route.match),
            filters: steps, action: action, shadowedBy: shadowedBy)
    }

    /// The conditions besides hosts, path and priority, one phrase each.
    static func conditions(_ match: RouteMatch) -> [String] {
        var phrases: [String] = []
        if !match.methods.isEmpty { phrases.append("method " + match.methods.joined(separator: "|")) }
        if let regex = match.pathRegex { phrases.append("path ~ \(regex)") }
        func field(_ what: String, _ field: FieldMatch) -> String {
            if let present = field.present { return "\(what) \(field.name) \(present ? "present" : "absent")" }
            if let regex = field.regex { return "\(what) \(field.name) ~ \(regex)" }
            return "\(what) \(field.name) = \(field.value ?? "")"
        }
        phrases += match.headers.map { field("header", $0) }
        phrases += match.query.map { field("query", $0) }
        if !match.sources.isEmpty { phrases.append("source " + match.sources.joined(separator: ", ")) }
        if let names = match.serverNames, !names.isEmpty { phrases.append("sni " + names.joined(separator: ", ")) }
        if let subject = match.clientSubject {
            phrases.append(field("client certificate", FieldMatch(name: "subject", value: subject.value,
                regex: subject.regex, present: subject.present)))
        }
        if let body = match.body {
            if let regex = body.regex { phrases.append("body ~ \(regex)") }
            phrases += body.json.map { "body json \($0.path) = \($0.value)" }
        }
        return phrases
    }

    /// A filter's settings as `config dump` names them; file contents never, secrets as the placeholder.
    private static func filter(_ filter: FilterSettings) -> Filter {
        var settings: [(key: String, value: String)] = []
        func list(_ items: [String]) -> String { items.joined(separator: ", ") }
        switch filter.kind {
        case .rateLimit(let limit):
            settings = [
                ("rate", "\(limit.rate)"), ("per", Units.format(limit.per)), ("burst", "\(limit.burst)"),
                ("key", list(limit.key.map(\.description))), ("scope", limit.scope.rawValue),
                ("delay", "\(limit.delay)"), ("status", "\(limit.status)"),
            ]
            if let redis = limit.redis {
                settings += [("redis", redis.address.description), ("on_failure", redis.onFailure.rawValue)]
                if redis.database != 0 { settings.append(("database", "\(redis.database)")) }
                if let user = redis.username { settings.append(("username", user)) }
                // The path says where the password comes from; the password itself is redacted already.
                if let file = redis.passwordFile {
                    settings += [("password_file", file), ("password", ConfigRedaction.placeholder)]
                }
            }
        case .basicAuth(let auth):
            settings = [("realm", auth.realm), ("htpasswd", auth.htpasswdFile)]
        case .jwt(let jwt):
            settings = [("algorithms", list(jwt.algorithms.map(\.rawValue)))]
            if !jwt.issuers.isEmpty { settings.append(("issuers", list(jwt.issuers))) }
            if !jwt.audiences.isEmpty { settings.append(("audiences", list(jwt.audiences))) }
            if let file = jwt.jwksFile { settings.append(("jwks_file", file)) }
            if let url = jwt.jwksURL { settings.append(("jwks_url", url)) }
            if let file = jwt.secretFile { settings.append(("secret_file", file)) }
            // The secret itself is redacted already; saying so tells the reader one is loaded.
            if jwt.secret != nil { settings.append(("secret", ConfigRedaction.placeholder)) }
            settings.append(("header", jwt.header))
            if !jwt.requireClaims.isEmpty {
                settings.append(("require_claims", list(jwt.requireClaims.map { "\($0.claim)=\($0.value)" })))
            }
        case .ipRules(let rules):
            if !rules.allow.isEmpty { settings.append(("allow", list(rules.allow))) }
            if !rules.deny.isEmpty { settings.append(("deny", list(rules.deny))) }
        case .hmacSignature(let hmac):
            settings = [("header", hmac.header), ("algorithm", hmac.algorithm.rawValue)]
            settings.append(("encoding", hmac.encoding.rawValue))
            if !hmac.prefix.isEmpty { settings.append(("prefix", hmac.prefix)) }
            // The path says where the secret comes from; the secret itself is redacted already.
            settings += [("secret_file", hmac.secretFile), ("secret", ConfigRedaction.placeholder)]
            let maxBody = Units.formatSize(Int64(hmac.maxBody))
            settings.append(("max_body", maxBody.replacingOccurrences(of: "\"", with: "")))
        case .cors(let cors):
            func corsList(_ value: CORSList) -> String {
                if case .listed(let items) = value { return list(items) }
                return "*"
            }
            settings = [("allow_origins", corsList(cors.allowOrigins)), ("allow_methods", corsList(cors.allowMethods))]
            if cors.allowHeaders != .listed([]) { settings.append(("allow_headers", corsList(cors.allowHeaders))) }
            if cors.exposeHeaders != .listed([]) { settings.append(("expose_headers", corsList(cors.exposeHeaders))) }
            if cors.allowCredentials { settings.append(("allow_credentials", "true")) }
            if let maxAge = cors.maxAge { settings.append(("max_age", Units.format(maxAge))) }
            if cors.allowPrivateNetwork { settings.append(("allow_private_network", "true")) }
        }
        return Filter(name: filter.name, kind: filter.kind.name, settings: settings)
    }
}
