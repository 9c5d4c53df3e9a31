// SPDX-License-Identifier: Apache-2.0
import JesterCache
import JesterCacheStore
import JesterConfig
import JesterControl
import JesterCore
import JesterLogging
import JesterSystem
import Logging
import NIOCore

/// What a route leads to, compiled for the request path: no dictionary lookups or string work per request.
final class CompiledRoute: Sendable {
    enum Action: Sendable {
        case proxy(UpstreamPool)
        /// One of several pools by weight (canaries, A/B).
        case split(SplitChooser)

        /// The pool a proxied request goes to; nil for a local answer.
        func pool(head: HTTPHead, bytes: UnsafeRawBufferPointer, clientAddress: String) -> UpstreamPool? {
            switch self {
            case .proxy(let pool): return pool
            case .split(let chooser): return chooser.choose(head: head, bytes: bytes, clientAddress: clientAddress)
            case .respond, .redirect: return nil
            }
        }
        /// A complete response, rendered once per configuration.
        case respond(head: ByteBuffer, body: ByteBuffer)
        /// A redirect whose location names parts of the request, rendered per request.
        case redirect(status: Int, location: RedirectTemplate)

        /// Answered by Jester itself.
        var isLocal: Bool {
            switch self {
            case .respond, .redirect: return true
            case .proxy, .split: return false
            }
        }
    }

    let name: String
    let maxBodySize: Int64
    let action: Action
    /// Further conditions (method, headers, query, sources, exact or regex path); usually empty.
    let conditions: RouteConditions
    /// `!conditions.isEmpty`, decided once: the lookup asks for every candidate route.
    let hasConditions: Bool
    /// What a proxied request's path becomes.
    let pathRewrite: PathRewrite
    /// The Host field sent upstream instead of the client's.
    let upstreamHost: [UInt8]?
    let requestEdits: HeaderEdits
    let responseEdits: HeaderEdits
    let retryPolicy: RetryPolicy
    /// Overrides of the pool's timeouts, and the whole exchange's limit.
    let timeouts: RouteTimeouts
    /// `timeouts.response`, `.read` and `.total` as NIO time, converted once (armed on every request).
    let responseTimeout: TimeAmount?
    let readTimeout: TimeAmount?
    let totalTimeout: TimeAmount?
    /// The request filters, listener-wide ones first; usually empty.
    let filters: FilterChain
    /// Response compression and request-body decoding (`compression = { ... }`); nil: neither.
    let compression: CompressionPolicy?
    /// The response filters (compression), in order; usually empty.
    let responseFilters: ResponseFilterChain
    /// `error_pages` (the route's, else its listener's); nil: the plain-text errors.
    let errorPages: ErrorPages?
    /// The shared HTTP cache's policy for this route (`cache = { ... }`); nil: not cached.
    let cachePolicy: CachePolicy?
    /// A cors filter answers for this route: the upstream's own `Access-Control-*` fields are dropped, so a
    /// browser never sees two (conflicting) answers.
    let replacesCORSFields: Bool
    /// Wasm policies at pre-upstream (after the filters) and post-response, listener-wide ones first; usually
    /// empty.
    let preUpstreamPolicies: [WorkerPolicy]
    let postResponsePolicies: [WorkerPolicy]
    /// The most request body a pre-upstream policy reads (0: none reads it).
    let preUpstreamBodyLimit: Int
    /// `policy_reroute`: a pre-upstream policy may send the request to another route, once
    /// (`RequestExchange+Reroute.swift`).
    let reroutes: Bool
    /// The route's own filters and pre-upstream policies, without its listener's: what a request a re-resolve
    /// pass moved here runs (its listener's ran already, on the first route).
    let ownFilters: FilterChain
    let ownPreUpstreamPolicies: [WorkerPolicy]

    init(
        name: String, maxBodySize: Int64, action: Action, conditions: RouteConditions = RouteConditions(),
        pathRewrite: PathRewrite = .none, upstreamHost: [UInt8]? = nil, requestEdits: HeaderEdits = HeaderEdits(),
        responseEdits: HeaderEdits = HeaderEdits(), retryPolicy: RetryPolicy = RetryPolicy(),
        timeouts: RouteTimeouts = RouteTimeouts(), filters: FilterChain = .empty,
        responseFilters: ResponseFilterChain = .empty, compression: CompressionPolicy? = nil,
        errorPages: ErrorPages? = nil, cachePolicy: CachePolicy? = nil,
        preUpstreamPolicies: [WorkerPolicy] = [], postResponsePolicies: [WorkerPolicy] = [], reroutes: Bool = false,
        ownFilterCount: Int? = nil, ownPreUpstreamPolicyCount: Int? = nil
    ) {
        self.reroutes = reroutes
        let ownFilters = ownFilterCount.map { min($0, filters.filters.count) } ?? filters.filters.count
        self.ownFilters = ownFilters == filters.filters.count ? filters : filters.suffix(ownFilters)
        ownPreUpstreamPolicies = Array(preUpstreamPolicies.suffix(ownPreUpstreamPolicyCount ?? preUpstreamPolicies.count))
        self.preUpstreamPolicies = preUpstreamPolicies
        self.postResponsePolicies = postResponsePolicies
        preUpstreamBodyLimit = preUpstreamPolicies.compactMap(\.bodyLimit).max() ?? 0
        self.errorPages = errorPages
        self.cachePolicy = cachePolicy
        replacesCORSFields = filters.filters.contains { $0 is CORSFilter }
        self.filters = filters
        self.compression = compression
        self.responseFilters = responseFilters
        self.timeouts = timeouts
        responseTimeout = timeouts.response.map(TimeAmount.init)
        readTimeout = timeouts.read.map(TimeAmount.init)
        totalTimeout = timeouts.total.map(TimeAmount.init)
        self.retryPolicy = retryPolicy
        self.name = name
        self.maxBodySize = maxBodySize
        self.action = action
        self.conditions = conditions
        hasConditions = !conditions.isEmpty
        self.pathRewrite = pathRewrite
        self.upstreamHost = upstreamHost
        self.requestEdits = requestEdits
        self.responseEdits = responseEdits
    }
}

/// Chooses the pool of a split route: smooth weighted round-robin over the pools, or, with a split key, the
/// pool whose slice of the weight range the key's hash falls in. The slices are laid out in configuration
/// order, so raising a canary from 5 % to 10 % moves only the keys between those marks. Loop-confined.
final class SplitChooser: @unchecked Sendable {
    let pools: [UpstreamPool]
    let weights: [Int]
    private let total: Int
    private let key: BalancingKey?
    private var rotation: SmoothWeightedRoundRobin
    private let candidates: [Int]

    init(pools: [UpstreamPool], weights: [Int], key: BalancingKey?) {
        self.pools = pools
        self.weights = weights
        self.key = key
        total = weights.reduce(0, +)
        rotation = SmoothWeightedRoundRobin(targetCount: pools.count)
        candidates = weights.indices.filter { weights[$0] > 0 }
    }

    func choose(head: HTTPHead, bytes: UnsafeRawBufferPointer, clientAddress: String) -> UpstreamPool {
        guard let key else { return pools[rotation.pick(from: candidates, weights: weights)] }
        var point = Int(key.hash(head: head, bytes: bytes, clientAddress: clientAddress) % UInt64(total))
        for index in candidates {
            point -= weights[index]
            if point < 0 { return pools[index] }
        }
        return pools[candidates[candidates.count - 1]]
    }
}

/// The routes of one listener: one table per priority level in use, highest first (nearly always just the
/// level 0 table), so an explicit `priority` overrides specificity across hosts and prefixes.
struct ListenerRoutes: Sendable {
    let levels: [RouteTable<CompiledRoute>]
    /// Some route matches client networks: the connection parses its client's address once.
    let needsClientAddress: Bool
    /// The most body any route of this listener looks at (`match_body`); 0: none does, and no body is read
    /// before routing.
    var bodyPeekLimit = 0
    /// The listener's pre-route policies, run before routing; usually empty.
    var preRoutePolicies: [WorkerPolicy] = []
    /// The routes by name, for a policy's `set-route` (only on listeners with pre-route policies or a route that
    /// re-routes).
    var routesByName: [String: CompiledRoute] = [:]

    /// The route called `name` on this listener.
    func route(named name: String) -> CompiledRoute? { routesByName[name] }

    /// `redirect_to_https`: every request is sent to this location instead of being routed.
    var httpsRedirect: RedirectTemplate?
    /// The listener's `error_pages`, for requests no route takes.
    var errorPages: ErrorPages?
    /// `hsts`: the Strict-Transport-Security value every response of this listener carries.
    var hsts: String? {
        didSet {
            hstsField = hsts.map { Array($0.utf8) }
            hstsLine = hsts.map { Array("Strict-Transport-Security: \($0)\r\n".utf8) }
        }
    }
    /// `http3`: the Alt-Svc value every response of this listener carries (`h3=":443"; ma=86400`), so clients
    /// that can learn HTTP/3 is served on the same port over UDP (RFC 7838, RFC 9114 §3.1.1).
    var altSvc: String? {
        didSet {
            altSvcField = altSvc.map { Array($0.utf8) }
            altSvcLine = altSvc.map { Array("Alt-Svc: \($0)\r\n".utf8) }
        }
    }
    /// `altSvc`'s value as bytes, and as an HTTP/1.1 field line, made once.
    private(set) var altSvcField: [UInt8]?
    private(set) var altSvcLine: [UInt8]?
    /// `hsts`'s value as bytes, and as an HTTP/1.1 field line, made once.
    private(set) var hstsField: [UInt8]?
    private(set) var hstsLine: [UInt8]?

    static let empty = ListenerRoutes(levels: [], needsClientAddress: false)

    func match(
        _ bytes: UnsafeRawBufferPointer, head: HTTPHead, client: IPAddressBytes?, tls: TLSRouteFacts? = nil,
        body: BodyPeek? = nil, tags: [String] = []
    ) -> CompiledRoute? {
        let host = head.hostField.map { head.fields[$0].value } ?? 0..<0
        for table in levels {
            let found = table.match(bytes, host: host, path: head.path) { route in
                !route.hasConditions
                    || route.conditions.matches(bytes, head: head, client: client, tls: tls, body: body, tags: tags)
            }
            if let found { return found }
        }
        return nil
    }
}

/// The `[http]` section's client timeouts (see `WorkerRuntime.timeouts`).
struct ClientTimeouts {
    let keepalive: TimeAmount
    let header: TimeAmount
    let body: TimeAmount
    let send: TimeAmount
}

/// `http.request_id_header` made ready once: the name as configured (for HTTP/1.1), lowercased (HTTP/2, and
/// comparing), and its field line's start.
struct RequestIDField: Sendable {
    let name: String
    let lowercased: [UInt8]
    /// The lowercased name as a string, as HTTP/2 fields carry it.
    let http2Name: String
    /// `Name: `, written before an id.
    let lineStart: [UInt8]
    /// The name is X-Request-Id (in any case), which the head parser finds while parsing.
    let isDefault: Bool

    init(_ name: String) {
        self.name = name
        lowercased = Array(name.lowercased().utf8)
        http2Name = name.lowercased()
        lineStart = Array("\(name): ".utf8)
        isDefault = name.lowercased() == "x-request-id"
    }
}

/// A client connection as the worker tracks it: counted against the connection limits, and told when the
/// worker drains.
protocol ClientConnection: AnyObject {
    func drain()
    /// Ends the connection now (the drain timeout passed), logging each request still under way as cut; returns
    /// how many there were.
    func cut() -> Int
}

/// Everything a worker derives from its configuration once, shared by all its connections.
///
/// One instance per configuration per worker. A worker runs a single event loop, and every mutable piece here
/// (pools, counters) is touched only on it; that confinement is what the `@unchecked Sendable` states.
final class WorkerRuntime: @unchecked Sendable {
    let configuration: Configuration
    let eventLoop: any EventLoop
    let parserLimits: HTTPHeadParser.Limits
    let pools: [String: UpstreamPool]
    let routeTables: [String: ListenerRoutes]
    let counters = WorkerCounters()
    /// `http.underscores_in_headers`, decided once.
    let dropsUnderscoredFields: Bool
    let rejectsUnderscoredFields: Bool
    let accessLog: AccessLog?
    /// `jesterctl tap`'s end in this worker (closed unless some tap is open).
    let tap: AccessTap
    /// `[tracing]`, when on.
    let tracing: WorkerTracing?
    /// `client_subject_header` of each TLS listener that sets one, as written.
    let clientSubjectHeaders: [String: [UInt8]]
    /// The `[http]` timeouts as NIO time, converted once: client connections arm them on every request.
    let timeouts: ClientTimeouts
    /// The request filters by name, as the routes' chains share them, so a control message can reach one (a
    /// jwt filter's key set fetched by the master).
    let filters: [String: any RequestFilter]
    /// The deadlines of this configuration's connections (client and upstream).
    let timers: TimerQueue
    /// What connections allocate their heads from: the channels' own (`context.channel.allocator`) is the same
    /// allocator behind two reference-counted hops.
    let allocator = ByteBufferAllocator()
    var requestIDs = RequestIDGenerator()
    /// `http.request_id_header`, in the forms the request path writes and compares it in.
    let requestIDField: RequestIDField
    /// Set when the worker drains: connections finish their exchange and close instead of waiting for more.
    var isDraining = false
    /// Open client connections, so draining can reach them.
    var connections: [ObjectIdentifier: any ClientConnection] = [:]
    /// The instance's connection counts shared with every worker (`server.max_connections`, ...), if the master
    /// made them; every connection counts there, whether a limit is set now or by a later reload.
    var sharedConnections: SharedConnections?
    /// The instance's rate-limit state, shared with every worker of every generation (see `RateLimitTable`);
    /// nil when the master passed none. Instance-scoped rate limits decide on it with `acquire(key:now:limit:)`.
    var sharedRateLimits: RateLimitTable?
    /// HTTP/3 0-RTT's replay records, shared like the rate limits but in a table of their own.
    var sharedEarlyDataRecords: RateLimitTable?
    /// The instance's shared HTTP cache (index and body files), when the master made one; routes with `cache`
    /// use it, others never look at it.
    var cacheStore: CacheStore? {
        didSet { cacheMemo = cacheStore.map { CacheEntryMemo(store: $0, allocator: allocator) } }
    }
    /// Recently served cache entries, open and decoded (`CacheEntryMemo`).
    private(set) var cacheMemo: CacheEntryMemo?
    /// This worker's partition of the instance's metrics and this configuration's series ids (see
    /// `WorkerMetrics`); nil when the master passed no table.
    var metrics: WorkerMetrics?
    /// The Wasm policies by name, one instance each in this worker (`[policies.NAME]`).
    let policies: [String: WorkerPolicy]
    /// Where every filter chain of this runtime counts its verdicts (`attachMetrics` fills it).
    let filterMetrics = FilterMetrics()
    /// Open connections per client address, kept only when `max_connections_per_client` is set.
    private var connectionsPerClient: [String: Int] = [:]
    private var nextRefusalLog = NIODeadline.uptimeNanoseconds(0)
    private var nextWarningLog = NIODeadline.uptimeNanoseconds(0)
    private let logger = Logger(component: .worker)
    /// Failed client TLS handshakes: each at debug, a summary warning at most once a minute.
    lazy var handshakeFailures = HandshakeFailureLog(eventLoop: eventLoop)
    /// Called on the event loop whenever the last connection of a draining worker closes.
    var onConnectionsClosed: (() -> Void)?

    /// What a client connection needs to know about its listener, looked up once per listener rather than per
    /// accepted connection.
    struct ListenerFacts {
        let name: String
        let routes: ListenerRoutes
        let servesHTTP2: Bool
        /// `http2_only`.
        let servesOnlyHTTP2: Bool
        let clientSubjectHeader: [UInt8]?
    }

    func listenerFacts(_ name: String) -> ListenerFacts {
        let listener = configuration.listeners.first { $0.name == name }
        return ListenerFacts(
            name: name, routes: routeTables[name] ?? .empty, servesHTTP2: listener?.servesHTTP2 ?? false,
            servesOnlyHTTP2: listener?.servesOnlyHTTP2 ?? false, clientSubjectHeader: clientSubjectHeaders[name])
    }

    /// A fresh request-rate bucket for a client connection, or nil without `http.connection_request_rate`.
    func makeRequestBucket() -> TokenBucket? {
        guard let rate = configuration.http.connectionRequestRate, rate > 0 else { return nil }
        return TokenBucket(rate: Double(rate), burst: Double(rate))
    }

    /// Monotonic seconds, for token buckets.
    var monotonicSeconds: Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    /// `connector` opens the pools' upstream connections: sockets unless a test hands the pools embedded channels.
    init(
        configuration: Configuration, eventLoop: any EventLoop, slot: Int, resolved: [String: String] = [:],
        connector: any UpstreamConnector = SocketConnector()
    ) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        timers = TimerQueue(eventLoop: eventLoop)
        let http = configuration.http
        timeouts = ClientTimeouts(
            keepalive: TimeAmount(http.keepaliveTimeout), header: TimeAmount(http.clientHeaderTimeout),
            body: TimeAmount(http.clientBodyTimeout), send: TimeAmount(http.sendTimeout))
        dropsUnderscoredFields = http.underscoresInHeaders == "drop"
        rejectsUnderscoredFields = http.underscoresInHeaders == "reject"
        parserLimits = HTTPHeadParser.Limits(
            maxHeadSize: http.maxRequestHeadSize, maxURILength: http.maxURILength, maxFieldCount: http.maxHeaderCount)
        var pools: [String: UpstreamPool] = [:]
        for upstream in configuration.upstreams {
            pools[upstream.name] = UpstreamPool(
                settings: upstream, eventLoop: eventLoop, timers: timers, firstTarget: slot, resolved: resolved,
                connector: connector)
        }
        self.pools = pools
        let allocator = ByteBufferAllocator()
        let filters = RequestFilters.compile(configuration.filters, eventLoop: eventLoop, resolved: resolved)
        self.filters = filters
        // One instance per attached policy (an unattached one only warns in the configuration).
        let attached = Set((configuration.listeners.flatMap(\.policies) + configuration.routes.flatMap(\.policies))
            .map(\.policy))
        let policies = Dictionary(uniqueKeysWithValues: configuration.policies.filter { attached.contains($0.name) }
            .map { settings in (settings.name, WorkerPolicy(settings: settings, logger: Logger(component: .worker))) })
        self.policies = policies
        func policyChain(_ route: RouteSettings?, _ listener: String, _ stage: PolicyStageName) -> [WorkerPolicy] {
            configuration.policyChain(for: route, listener: listener, stage: stage).compactMap { policies[$0.name] }
        }
        var tables: [String: ListenerRoutes] = [:]
        for listener in configuration.listeners {
            var entries: [Int: [RouteTable<CompiledRoute>.Entry]] = [:]
            for route in configuration.routes where route.listeners.isEmpty || route.listeners.contains(listener.name) {
                let action: CompiledRoute.Action
                switch route.action {
                case .proxy(let upstream):
                    action = .proxy(pools[upstream]!)
                case .split(let targets, let key):
                    action = .split(SplitChooser(
                        pools: targets.map { pools[$0.upstream]! }, weights: targets.map(\.weight),
                        key: key.flatMap(BalancingKey.init)))
                case .respond(let status, let headers, let body):
                    action = Self.renderResponse(status: status, headers: headers, body: body, allocator: allocator)
                case .redirect(let status, let location):
                    // (The loader checked the template; a location with no placeholder is rendered once.)
                    let template = (try? RedirectTemplate(parsing: location))
                    if let template, template.fixedText == nil {
                        action = .redirect(status: status, location: template)
                    } else {
                        action = Self.renderResponse(
                            status: status,
                            headers: [HeaderPair(name: "Location", value: template?.fixedText ?? location)],
                            body: "", allocator: allocator)
                    }
                }
                let conditions = Self.conditions(route)
                let rewrite = route.rewrite
                let pathRewrite: PathRewrite
                if rewrite.stripPrefix {
                    pathRewrite = .replacePrefix(count: route.pathPrefix.utf8.count, replacement: [])
                } else if let prefix = rewrite.replacePrefix {
                    pathRewrite = .replacePrefix(count: route.pathPrefix.utf8.count, replacement: Array(prefix.utf8))
                } else if let regex = rewrite.regex, let pattern = try? RoutePattern(regex) {
                    pathRewrite = .regex(pattern, template: rewrite.replacement ?? "")
                } else {
                    pathRewrite = .none
                }
                func edits(_ settings: HeaderEditSettings) -> HeaderEdits {
                    HeaderEdits(set: settings.set.map { ($0.name, $0.value) }, add: settings.add.map { ($0.name, $0.value) },
                        remove: settings.remove)
                }
                let compiled = CompiledRoute(
                    name: route.name, maxBodySize: route.maxBodySize ?? http.maxBodySize, action: action,
                    conditions: conditions, pathRewrite: pathRewrite, upstreamHost: rewrite.upstreamHost.map { Array($0.utf8) },
                    requestEdits: edits(rewrite.requestHeaders), responseEdits: edits(rewrite.responseHeaders),
                    retryPolicy: RetryPolicy(
                        maxRetries: route.retry.retries, onReset: route.retry.on.contains("reset"),
                        statuses: Set(route.retry.on.compactMap { Int($0) }), nonIdempotent: route.retry.nonIdempotent),
                    timeouts: route.timeouts,
                    filters: RequestFilters.chain(
                        configuration.filterChain(for: route, listener: listener.name), compiled: filters,
                        metrics: filterMetrics),
                    responseFilters: Self.responseFilters(
                        compression: configuration.compression(for: route, listener: listener.name)),
                    compression: configuration.compression(for: route, listener: listener.name),
                    errorPages: configuration.errorPages(for: route, listener: listener.name).map(ErrorPages.init),
                    cachePolicy: route.cache.map(CachePolicy.init),
                    preUpstreamPolicies: policyChain(route, listener.name, .preUpstream),
                    postResponsePolicies: policyChain(route, listener.name, .postResponse),
                    reroutes: route.policyReroute, ownFilterCount: route.filters.count,
                    ownPreUpstreamPolicyCount: route.policies.filter { $0.stage == .preUpstream }.count)
                entries[route.match.priority, default: []].append(
                    .init(hosts: route.hosts.map(HostPattern.init), pathPrefix: route.pathPrefix, value: compiled,
                        rank: conditions.specificity))
            }
            var routes = ListenerRoutes(
                levels: entries.sorted { $0.key > $1.key }.map { RouteTable($0.value) },
                needsClientAddress: configuration.routes.contains { !$0.match.sources.isEmpty })
            routes.bodyPeekLimit = entries.values.joined().map { $0.value.conditions.needsBody ? $0.value.conditions.bodyLimit : 0 }
                .max() ?? 0
            if let port = listener.redirectToHTTPS {
                routes.httpsRedirect = try? RedirectTemplate(
                    parsing: port == 443 ? "https://{hostname}{target}" : "https://{hostname}:\(port){target}")
            }
            routes.hsts = listener.hsts?.fieldValue
            if listener.servesHTTP3 { routes.altSvc = "h3=\":\(listener.address.port)\"; ma=86400" }
            routes.errorPages = listener.errorPages.map(ErrorPages.init)
            routes.preRoutePolicies = policyChain(nil, listener.name, .preRoute)
            if !routes.preRoutePolicies.isEmpty || entries.values.joined().contains(where: { $0.value.reroutes }) {
                for entry in entries.values.joined() { routes.routesByName[entry.value.name] = entry.value }
            }
            tables[listener.name] = routes
        }
        routeTables = tables
        requestIDField = RequestIDField(configuration.http.requestIDHeader)
        tap = AccessTap(eventLoop: eventLoop)
        tracing = WorkerTracing(configuration.tracing)
        accessLog = configuration.log.accessLog ? AccessLog(fields: configuration.log.accessLogFields) : nil
        clientSubjectHeaders = Dictionary(uniqueKeysWithValues: configuration.listeners.compactMap { listener in
            listener.tls?.clientSubjectHeader.map { (listener.name, Array($0.utf8)) }
        })
        for case let limit as RateLimitFilter in filters.values { limit.runtime = self }
    }

    /// A route's matchers, compiled (the loader has validated every expression and network).
    /// A route's response filters, in the order they apply: compression (the last word on the body's bytes).
    private static func responseFilters(compression: CompressionPolicy?) -> ResponseFilterChain {
        guard let compression else { return .empty }
        return ResponseFilterChain(filters: [CompressionFilter(policy: compression)])
    }

    private static func conditions(_ route: RouteSettings) -> RouteConditions {
        var conditions = RouteConditions()
        let match = route.match
        conditions.methods = match.methods.map { Array($0.utf8) }
        conditions.exactPath = match.exactPath
        conditions.pathLength = route.pathPrefix.utf8.count
        conditions.pathPattern = match.pathRegex.flatMap { try? RoutePattern($0) }
        func compile(_ field: FieldMatch, lowercasing: Bool) -> RouteConditions.FieldCondition {
            let test: RouteConditions.Test
            if let present = field.present {
                test = present ? .present : .absent
            } else if let regex = field.regex, let pattern = try? RoutePattern(regex) {
                test = .matches(pattern)
            } else {
                test = .equals(Array((field.value ?? "").utf8))
            }
            return .init(name: lowercasing ? field.name.lowercased() : field.name, test: test)
        }
        conditions.headers = match.headers.map { compile($0, lowercasing: true) }
        conditions.query = match.query.map { compile($0, lowercasing: false) }
        conditions.sources = match.sources.compactMap(CIDR.init)
        conditions.serverNames = (match.serverNames ?? []).map(HostPattern.init)
        conditions.tags = match.policyTags ?? []
        if let subject = match.clientSubject { conditions.clientSubject = compile(subject, lowercasing: false).test }
        if let body = match.body {
            conditions.bodyLimit = Int(body.maxSize)
            conditions.bodyPattern = body.regex.flatMap { try? RoutePattern($0) }
            conditions.bodyJSON = body.json.map { (path: $0.path.split(separator: ".").map(String.init), value: $0.value) }
        }
        return conditions
    }

    /// Renders a fixed response's head (without the Connection field, which depends on the exchange) and body.
    private static func renderResponse(
        status: Int, headers: [HeaderPair], body: String, allocator: ByteBufferAllocator
    ) -> CompiledRoute.Action {
        var head = allocator.buffer(capacity: 256)
        head.writeString("HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\n")
        var hasContentType = false
        for header in headers {
            if header.name.lowercased() == "content-type" { hasContentType = true }
            head.writeString("\(header.name): \(header.value)\r\n")
        }
        if !hasContentType, !body.isEmpty { head.writeString("Content-Type: text/plain; charset=utf-8\r\n") }
        head.writeString("Content-Length: \(body.utf8.count)\r\n")
        return .respond(head: head, body: allocator.buffer(string: body))
    }

    /// Admits a new client connection, or refuses it when the worker or this client address is at its limit
    /// (`http.max_connections`, `http.max_connections_per_client`). Refusals are counted and logged at most once
    /// a second, so a flood cannot turn into a flood of log lines.
    func register(_ connection: any ClientConnection, clientAddress: String) -> Bool {
        let http = configuration.http
        var refusal: String?
        if http.maxConnections > 0, connections.count >= http.maxConnections {
            refusal = "max_connections (\(http.maxConnections)) reached"
        } else if http.maxConnectionsPerClient > 0, connectionsPerClient[clientAddress, default: 0] >= http.maxConnectionsPerClient {
            refusal = "max_connections_per_client (\(http.maxConnectionsPerClient)) reached for \(clientAddress)"
        }
        if refusal == nil, let shared = sharedConnections {
            let server = configuration.server
            switch shared.table.admit(clientAddress, partition: shared.partition,
                maxTotal: server.maxConnections ?? 0, maxPerClient: server.maxConnectionsPerClient ?? 0)
            {
            case .instanceFull(let limit): refusal = "server.max_connections (\(limit)) reached for the instance"
            case .clientFull(let limit):
                refusal = "server.max_connections_per_client (\(limit)) reached for \(clientAddress) on the instance"
            case nil: break
            }
        }
        if let refusal {
            counters.refusedConnections &+= 1
            let now = NIODeadline.now()
            if now >= nextRefusalLog {
                nextRefusalLog = now + .seconds(1)
                logger.warning("connection refused", metadata: [
                    "reason": "\(refusal)", "refused_so_far": .stringConvertible(counters.refusedConnections)])
            }
            return false
        }
        connections[ObjectIdentifier(connection)] = connection
        if http.maxConnectionsPerClient > 0 { connectionsPerClient[clientAddress, default: 0] += 1 }
        counters.openConnections = connections.count
        metricsConnectionOpened(connection)
        return true
    }

    /// A warning from a connection, at most once a second (a flood must not become a flood of log lines).
    func logWarning(_ message: String, metadata: Logger.Metadata) {
        let now = NIODeadline.now()
        guard now >= nextWarningLog else { return }
        nextWarningLog = now + .seconds(1)
        logger.warning("\(message)", metadata: metadata)
    }

    /// A connection's client turned out to be another address (a PROXY protocol header): counts it against that
    /// address's limit instead; false when that address is at its limit (the caller closes the connection).
    func reassign(from oldAddress: String, to newAddress: String) -> Bool {
        guard oldAddress != newAddress else { return true }
        let limit = configuration.http.maxConnectionsPerClient
        if limit > 0, connectionsPerClient[newAddress, default: 0] >= limit {
            counters.refusedConnections &+= 1
            return false
        }
        // (On refusal the connection still counts under its old address, which unregister releases.)
        if let shared = sharedConnections, shared.table.reassign(from: oldAddress, to: newAddress,
            partition: shared.partition, maxPerClient: configuration.server.maxConnectionsPerClient ?? 0) != nil
        {
            counters.refusedConnections &+= 1
            return false
        }
        if limit > 0 {
            let remaining = connectionsPerClient[oldAddress, default: 1] - 1
            connectionsPerClient[oldAddress] = remaining > 0 ? remaining : nil
            connectionsPerClient[newAddress, default: 0] += 1
        }
        return true
    }

    /// A connection's protocol handler changed (HTTP/1 to HTTP/2): the new one is tracked in its place, with the
    /// same slot in the limits.
    func transfer(from old: any ClientConnection, to new: any ClientConnection) {
        guard connections.removeValue(forKey: ObjectIdentifier(old)) != nil else { return }
        connections[ObjectIdentifier(new)] = new
        metricsConnectionTransferred(from: old, to: new)
    }

    func unregister(_ connection: any ClientConnection, clientAddress: String) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        metrics?.connectionClosed(connection)
        if let shared = sharedConnections { shared.table.release(clientAddress, partition: shared.partition) }
        if configuration.http.maxConnectionsPerClient > 0 {
            let remaining = connectionsPerClient[clientAddress, default: 1] - 1
            connectionsPerClient[clientAddress] = remaining > 0 ? remaining : nil
        }
        counters.openConnections = connections.count
        if connections.isEmpty, isDraining { onConnectionsClosed?() }
    }

    /// The drain timeout passed: closes every connection left, logging each request still under way (so every
    /// request has its access-log line), and returns how many requests were cut.
    func cutInFlightRequests() -> Int {
        let open = Array(connections.values)
        return open.reduce(0) { $0 + $1.cut() }
    }

    /// Starts draining every connection: idle ones close now, busy ones after their current exchange.
    func drainConnections() {
        isDraining = true
        for connection in connections.values { connection.drain() }
        if connections.isEmpty { onConnectionsClosed?() }
    }
}

/// The counters a worker reports to the master. Loop-confined like `WorkerRuntime`.
final class WorkerCounters: @unchecked Sendable {
    var openConnections = 0
    var requests = 0
    var bytesIn = 0
    var bytesOut = 0
    var errors = 0
    /// Requests sent again after a reused upstream connection closed before answering.
    var upstreamReplays = 0
    /// Requests sent again to another target after a failure (route `retries`).
    var upstreamRetries = 0
    /// Connections closed on accept because a connection limit was reached.
    var refusedConnections = 0
    /// TLS handshakes that failed (bad client hello, no common cipher, a refused client certificate).
    var tlsHandshakeFailures = 0
    /// QUIC counters of the worker's HTTP/3 listeners (reported to the master, shown by `jesterctl status`).
    var quic = QUICStats()
}

/// Reason phrases for the statuses Jester produces itself.
enum HTTPStatus {
    static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 416: return "Range Not Satisfiable"
        case 417: return "Expectation Failed"
        case 421: return "Misdirected Request"
        case 422: return "Unprocessable Content"
        case 426: return "Upgrade Required"
        case 428: return "Precondition Required"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 451: return "Unavailable For Legal Reasons"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }
}

/// The instance-wide connection table and this worker's partition of it (see `ConnectionTable`).
struct SharedConnections {
    let table: ConnectionTable
    let partition: Int
}
