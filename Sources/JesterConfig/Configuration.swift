// SPDX-License-Identifier: Apache-2.0
import Foundation

/// The whole validated configuration of one Jester instance: immutable, `Sendable`, and `Codable` so the master
/// can hand it to workers over the control channel (workers never read configuration files).
///
/// Every field has a documented default; `ConfigSchema` is the single list of keys, types, defaults and
/// descriptions that the loader, `jester config schema` and the man page are checked against.
public struct Configuration: Sendable, Codable, Equatable {
    public var server: ServerSettings
    public var log: LogSettings
    public var http: HTTPSettings
    public var listeners: [ListenerSettings]
    public var routes: [RouteSettings]
    public var upstreams: [UpstreamSettings]
    /// `[filters.NAME]`, sorted by name (TOML tables keep no order); routes and listeners use them by name.
    @EmptyIfMissing public var filters: [FilterSettings]
    /// `[policies.NAME]`, sorted by name; listeners and routes attach them by name and stage.
    @EmptyIfMissing public var policies: [PolicySettings]
    /// `[admin]`: the master's admin API; nil (the table absent) keeps it off.
    public var admin: AdminSettings?
    /// `[tracing]`: OpenTelemetry tracing; nil (the table absent) keeps it off.
    public var tracing: TracingSettings?
    /// `[control_plane]`: the control plane the master takes snapshots from; nil: none.
    public var controlPlane: ControlPlaneSettings?
    /// `[metrics]`: whether workers count and scrapes are answered (on unless turned off).
    @DefaultIfMissing<MetricsSettingsDefault> public var metrics = MetricsSettings()
    /// `[cache]`: the shared HTTP cache's store; nil: the defaults (used only when a route has `cache`).
    public var cache: CacheStoreSettings?
    /// What the loader found questionable but usable (an unused filter): for `jester config validate` and the
    /// reload log. Not part of the configuration's meaning, so not part of its hash.
    @EmptyIfMissing public var warnings: [ConfigDiagnostic]
    /// The files this configuration was read from, main file first.
    public var files: [String]
    /// A short stable hash of the effective configuration, shown by `jesterctl status`.
    public var hash: String

    public init(
        server: ServerSettings = .init(), log: LogSettings = .init(), http: HTTPSettings = .init(),
        listeners: [ListenerSettings] = [], routes: [RouteSettings] = [], upstreams: [UpstreamSettings] = [],
        filters: [FilterSettings] = [], files: [String] = [], hash: String = ""
    ) {
        self.server = server
        self.log = log
        self.http = http
        self.listeners = listeners
        self.routes = routes
        self.upstreams = upstreams
        self.filters = filters
        self.files = files
        self.hash = hash
    }

    /// The upstream pool called `name`.
    public func upstream(named name: String) -> UpstreamSettings? {
        upstreams.first { $0.name == name }
    }
}

/// `[server]`: the process model.
public struct ServerSettings: Sendable, Codable, Equatable {
    /// Worker processes; nil means one per CPU.
    public var workers: Int?
    /// The user workers run as (default `jester`, falling back to `nobody` when that user does not exist).
    public var user: String?
    /// The group workers run as (default: the user's primary group).
    public var group: String?
    /// Where the master writes its pid.
    public var pidFile: String
    /// The control socket `jesterctl` talks to.
    public var controlSocket: String
    /// Members of this group may use the control socket besides root and the master's own user.
    public var controlGroup: String?
    /// How long a graceful stop or drain waits for in-flight requests before closing them.
    public var drainTimeout: Duration
    /// How long new workers have to report ready on start and reload.
    public var workerStartTimeout: Duration
    /// Old generations allowed to drain side by side; past that, the oldest is closed at once, so frequent
    /// reloads with long-lived connections cannot pile up workers (nginx's failure mode).
    public var maxDrainingGenerations: Int
    /// How often the master replaces the TLS session-ticket key (nil: the default, 1 hour). Optional so an older
    /// binary's settings still decode in a binary upgrade.
    public var ticketKeyRotation: Duration?
    /// Client connections of the whole instance, every worker and generation together (nil or 0: no limit);
    /// `http.max_connections` limits each worker. Optional so an older binary's settings still decode.
    public var maxConnections: Int?
    /// Connections from one client address to the whole instance (nil or 0: no limit).
    public var maxConnectionsPerClient: Int?

    public init(
        workers: Int? = nil, user: String? = nil, group: String? = nil, pidFile: String = "/run/jester/jester.pid",
        controlSocket: String = "/run/jester/control.sock", controlGroup: String? = nil,
        drainTimeout: Duration = .seconds(30), workerStartTimeout: Duration = .seconds(10),
        maxDrainingGenerations: Int = 4
    ) {
        self.workers = workers
        self.user = user
        self.group = group
        self.pidFile = pidFile
        self.controlSocket = controlSocket
        self.controlGroup = controlGroup
        self.drainTimeout = drainTimeout
        self.workerStartTimeout = workerStartTimeout
        self.maxDrainingGenerations = maxDrainingGenerations
    }
}

/// `[log]`: the JSON-lines log and the access log.
public struct LogSettings: Sendable, Codable, Equatable {
    /// The lowest level written: trace, debug, info, notice, warning, error or critical.
    public var level: String
    /// Whether each request is logged as one JSON line.
    public var accessLog: Bool
    /// The file access-log lines are appended to (an absolute path); nil: standard output. The master opens it
    /// as root (and again on reopen, for logrotate) and hands workers the descriptor: workers never open paths.
    public var accessLogFile: String?
    /// The fields each access-log line has, in this order; nil: all of them.
    public var accessLogFields: [AccessLogField]?

    public init(
        level: String = "info", accessLog: Bool = true, accessLogFile: String? = nil,
        accessLogFields: [AccessLogField]? = nil
    ) {
        self.level = level
        self.accessLog = accessLog
        self.accessLogFile = accessLogFile
        self.accessLogFields = accessLogFields
    }
}

/// `[http]`: limits and timeouts of the HTTP/1.1 data plane.
public struct HTTPSettings: Sendable, Codable, Equatable {
    /// The largest request head (request line and header fields) accepted; larger gets 431.
    public var maxRequestHeadSize: Int
    /// The longest request target accepted; longer gets 414.
    public var maxURILength: Int
    /// The most header fields in a request; more gets 431.
    public var maxHeaderCount: Int
    /// The largest request body accepted, unless a route sets its own; larger gets 413.
    public var maxBodySize: Int64
    /// How long a client has to send a complete request head; slower gets 408.
    public var clientHeaderTimeout: Duration
    /// How long an idle keep-alive connection is kept open.
    public var keepaliveTimeout: Duration
    /// The longest pause between two reads of a request body; slower gets 408 (slow POST).
    public var clientBodyTimeout: Duration
    /// The longest a client may go without accepting response bytes before it is closed (slow reader).
    public var sendTimeout: Duration
    /// Client connections per worker (0: no limit).
    public var maxConnections: Int
    /// Connections from one client address per worker (0: no limit).
    public var maxConnectionsPerClient: Int
    /// Requests one client connection may send per second, on average (nil or 0: no limit); a burst of as many
    /// is allowed. Optional: see ListenerSettings.
    public var connectionRequestRate: Int?
    /// Streams one HTTP/2 client may have open at once (nil: 128). Optional: see ListenerSettings.
    public var http2MaxStreams: Int?
    public var http2MaxConcurrentStreams: Int { http2MaxStreams ?? 128 }
    /// Requests served on one client connection before it is closed (0: no limit).
    public var keepaliveRequests: Int
    /// Whether to add the RFC 7239 `Forwarded` header besides the `X-Forwarded-*` ones.
    public var forwardedHeader: Bool
    /// What happens to request header fields with an underscore in their name: "drop", "reject" or "allow".
    /// CGI-style frameworks map `X_Foo` and `X-Foo` to the same variable, so a client could otherwise send a field
    /// the proxy never inspected under another spelling (nginx drops them too).
    public var underscoresInHeaders: String
    /// The header field a request id is read from (a client's own, up to 128 bytes, is kept), sent upstream in,
    /// and returned to the client in, so one id follows a request through every log. Defaulted when missing so
    /// an older binary's settings still decode.
    @DefaultIfMissing<RequestIDHeaderDefault> public var requestIDHeader: String = RequestIDHeaderDefault.defaultValue

    public init(
        maxRequestHeadSize: Int = 16 * 1024, maxURILength: Int = 8 * 1024, maxHeaderCount: Int = 100,
        maxBodySize: Int64 = 10 * 1024 * 1024, clientHeaderTimeout: Duration = .seconds(10),
        keepaliveTimeout: Duration = .seconds(75), keepaliveRequests: Int = 10_000, forwardedHeader: Bool = false,
        underscoresInHeaders: String = "drop", clientBodyTimeout: Duration = .seconds(60),
        sendTimeout: Duration = .seconds(60), maxConnections: Int = 10_000, maxConnectionsPerClient: Int = 0
    ) {
        self.maxRequestHeadSize = maxRequestHeadSize
        self.maxURILength = maxURILength
        self.maxHeaderCount = maxHeaderCount
        self.maxBodySize = maxBodySize
        self.clientHeaderTimeout = clientHeaderTimeout
        self.keepaliveTimeout = keepaliveTimeout
        self.keepaliveRequests = keepaliveRequests
        self.forwardedHeader = forwardedHeader
        self.underscoresInHeaders = underscoresInHeaders
        self.clientBodyTimeout = clientBodyTimeout
        self.sendTimeout = sendTimeout
        self.maxConnections = maxConnections
        self.maxConnectionsPerClient = maxConnectionsPerClient
    }

    /// The largest request id taken from a client; a longer one is replaced with one of Jester's own.
    public static let maxClientRequestIDLength = 128
}

/// `health_check`: the master probes every target of the pool on a schedule and tells every worker.
public struct HealthCheckSettings: Sendable, Codable, Equatable {
    /// "http" (a GET of `path`, `expect_status` expected) or "tcp" (a connection that opens).
    public var type: String
    public var path: String
    public var interval: Duration
    public var timeout: Duration
    /// Consecutive successes that make a target healthy again, and failures that make it unhealthy.
    public var rise: Int
    public var fall: Int
    /// The statuses that count as healthy.
    public var expectStatus: ClosedRange<Int>

    public init(
        type: String = "http", path: String = "/", interval: Duration = .seconds(5), timeout: Duration = .seconds(2),
        rise: Int = 2, fall: Int = 3, expectStatus: ClosedRange<Int> = 200...399
    ) {
        self.type = type
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
        self.expectStatus = expectStatus
    }
}

/// `circuit_breaker` of a pool (per worker).
public struct CircuitBreakerSettings: Sendable, Codable, Equatable {
    /// Requests in flight at most (0: no limit).
    public var maxRequests = 0
    /// The failed share of requests in `window` (percent) that opens the breaker.
    public var failurePercent = 50
    public var minimumRequests = 20
    public var window: Duration = .seconds(10)
    public var openFor: Duration = .seconds(5)
    public var halfOpenRequests = 3

    public init() {}
}

/// One server of an upstream pool.
public struct UpstreamTarget: Sendable, Codable, Hashable, CustomStringConvertible {
    public var address: SocketAddressSpec
    /// Its share of requests relative to the pool's other targets.
    public var weight: Int
    /// Serves only while no other target can.
    public var backup: Bool
    /// Requests in flight to this target per worker, at most (nil: the pool's `max_requests_per_target`).
    public var maxRequests: Int?

    public init(address: SocketAddressSpec, weight: Int = 1, backup: Bool = false, maxRequests: Int? = nil) {
        self.address = address
        self.weight = weight
        self.backup = backup
        self.maxRequests = maxRequests
    }

    public var description: String { address.description }
}

/// `[[listeners]]`: an address Jester accepts connections on.
public struct ListenerSettings: Sendable, Codable, Equatable {
    /// The name routes refer to.
    public var name: String
    /// Where to listen.
    public var address: SocketAddressSpec
    /// The kernel accept queue length (listen(2) backlog).
    public var backlog: Int
    /// "tcp": relay raw streams to `upstream` instead of serving HTTP. (Optional fields here and below, so that
    /// the settings of an older binary, handed over in a binary upgrade, still decode.)
    public var protocolName: String?
    /// The pool a TCP listener relays to.
    public var upstream: String?
    /// A TCP connection idle this long both ways is closed (default 1 hour).
    public var idleTimeout: Duration?
    /// Clients in these networks (load balancers) start every connection with a PROXY protocol header, which
    /// names the real client.
    public var proxyProtocolFrom: [String]?
    /// TLS termination: certificates, versions, ciphers, client certificates.
    public var tls: TLSListenerSettings?
    /// Serve HTTP/2 (ALPN "h2" on TLS, prior knowledge on plain text); nil: yes.
    public var http2: Bool?
    /// Serve HTTP/2 and nothing else (`http2_only`): every plain-text connection is HTTP/2 with prior knowledge,
    /// so bytes that are not the connection preface end it (RFC 9113 §3.4) rather than being read as HTTP/1.1;
    /// TLS offers only h2. nil: no.
    public var http2Only: Bool?
    /// Serve HTTP/3 too, over QUIC on the same address and port over UDP (TLS listeners only), and advertise it
    /// with Alt-Svc; nil: no.
    public var http3: Bool?
    /// `http3_retry = "always"`: every new QUIC connection proves its client's address with a Retry first (one
    /// more round trip); nil or "auto": only while many handshakes are under way.
    public var http3Retry: String?
    /// `http3_early_data = true`: resuming QUIC clients may send requests in 0-RTT; safe ones (GET, HEAD,
    /// OPTIONS, TRACE) go upstream before the handshake completes, marked `Early-Data: 1`, the others wait for
    /// it. nil: no (0-RTT data is refused; the client sends it again after the handshake).
    public var http3EarlyData: Bool?
    /// Filters every route on this listener runs first, before its own (nil: none).
    public var filters: [String]?
    /// `policies`: Wasm policies of every request on this listener, each at its stage, before the routes' own.
    @EmptyIfMissing public var policies: [PolicyAttachment]
    /// Answer every request with 308 to `https://<hostname><:port unless 443><request target>` (this port);
    /// nil: serve routes. Such a listener needs no routes and is never TLS.
    public var redirectToHTTPS: Int?
    /// The Strict-Transport-Security field added to responses (TLS listeners only); nil: none.
    public var hsts: HSTSSettings?
    /// `compression`: the compression of this listener's routes that set none of their own.
    public var compression: CompressionSettings?
    /// `error_pages`: the error pages of this listener's routes that set none, and of requests no route takes.
    public var errorPages: ErrorPageSettings?

    public var servesHTTP2: Bool { http2 ?? true }
    /// `http2_only = true`.
    public var servesOnlyHTTP2: Bool { http2Only ?? false }
    /// `http3 = true`.
    public var servesHTTP3: Bool { http3 ?? false }
    /// `http3_retry = "always"`.
    public var alwaysRetriesHTTP3: Bool { http3Retry == "always" }
    /// `http3_early_data = true`.
    public var acceptsHTTP3EarlyData: Bool { http3EarlyData ?? false }

    public var isTCP: Bool { protocolName == "tcp" }

    public init(name: String, address: SocketAddressSpec, backlog: Int = 511) {
        self.name = name
        self.address = address
        self.backlog = backlog
    }
}

/// An IP address and port, as written in the configuration (`127.0.0.1:8080`, `[::1]:8080`).
public struct SocketAddressSpec: Sendable, Codable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`; nil when malformed.
    public init?(parsing text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (1...65535).contains(port),
            portPart.allSatisfy(\.isNumber)
        else { return nil }
        self.host = String(hostPart)
        self.port = port
    }

    public var isIPv6: Bool { host.contains(":") }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// `[[routes]]`: which requests a route takes and what it does with them.
public struct RouteSettings: Sendable, Codable, Equatable {
    /// A name for logs; `route-N` by default.
    public var name: String
    /// The listeners this route is on; empty means all.
    public var listeners: [String]
    /// Host names (exact or `*.wildcard`); empty means any host.
    public var hosts: [String]
    /// The path prefix; the longest matching prefix wins.
    public var pathPrefix: String
    /// The body limit for this route, overriding `http.max_body_size`.
    public var maxBodySize: Int64?
    /// What the route does.
    public var action: RouteAction
    /// The further conditions a request must meet (all of them).
    public var match: RouteMatch = RouteMatch()
    /// How a proxied request and its response are changed on the way.
    public var rewrite: RouteRewrite = RouteRewrite()
    /// When a proxied request is sent again to another target.
    public var retry: RetrySettings = RetrySettings()
    /// Timeouts of this route, overriding its pool's.
    public var timeouts: RouteTimeouts = RouteTimeouts()
    /// The names of the filters this route runs, in order, after its listener's (`[filters.NAME]`).
    @EmptyIfMissing public var filters: [String]
    /// Response compression and request-body decoding (`compression = { ... }`); nil: neither.
    public var compression: CompressionSettings?
    /// The shared HTTP cache for this route's responses (`cache = { ... }`); nil: not cached.
    public var cache: RouteCacheSettings?
    /// `policies`: Wasm policies this route runs, each at its stage, after its listener's.
    @EmptyIfMissing public var policies: [PolicyAttachment]
    /// `policy_reroute`: a pre-upstream policy of this route may send the request to another route (`set-route`,
    /// `add-route-tag`), once, for routing on what only the body says; off, such a call fails closed.
    public var policyReroute = false
    /// Error bodies and intercepted upstream errors (`error_pages = { ... }`); nil: the listener's.
    public var errorPages: ErrorPageSettings?

    public init(
        name: String, listeners: [String] = [], hosts: [String] = [], pathPrefix: String = "/",
        maxBodySize: Int64? = nil, action: RouteAction
    ) {
        self.name = name
        self.listeners = listeners
        self.hosts = hosts
        self.pathPrefix = pathPrefix
        self.maxBodySize = maxBodySize
        self.action = action
    }
}

/// The matchers of a route besides hosts and path prefix: every one given must hold.
public struct RouteMatch: Sendable, Codable, Equatable {
    /// Methods, uppercase; empty: any.
    public var methods: [String] = []
    /// The path must equal `path_prefix` exactly (written `path = "/x"`).
    public var exactPath = false
    /// A regular expression the path must match.
    public var pathRegex: String?
    public var headers: [FieldMatch] = []
    public var query: [FieldMatch] = []
    /// Client networks (CIDR); empty: any client.
    public var sources: [String] = []
    /// Higher first among routes that could both take a request; 0 by default.
    public var priority = 0
    /// TLS server names (SNI), exact or `*.wildcard`. (This and the next are optional so that an older
    /// binary's settings, handed over in a binary upgrade, still decode.)
    public var serverNames: [String]?
    /// The verified client certificate's subject: `present`/`absent`, or `value`/`regex` (a FieldMatch whose
    /// name is unused).
    public var clientSubject: FieldMatch?
    /// Conditions on the request body (`match_body`): the body is read, up to `maxSize`, before the route is chosen.
    public var body: BodyMatch?
    /// Tags the listener's pre-route Wasm policies must have given the request (`add-route-tag`), all of them
    /// (`policy_tags`); nil: none needed.
    public var policyTags: [String]?

    public init() {}

    public var isEmpty: Bool { self == RouteMatch() }
}

/// `match_body` of a route.
public struct BodyMatch: Sendable, Codable, Equatable {
    /// How much of the body is read and looked at.
    public var maxSize: Int64 = 8192
    /// A regular expression the start of the body must match.
    public var regex: String?
    /// JSON fields the whole body must have: dotted path → the value's text.
    public var json: [JSONFieldMatch] = []

    public init() {}
}

/// One `match_body.json` condition.
public struct JSONFieldMatch: Sendable, Codable, Equatable {
    public var path: String
    public var value: String

    public init(path: String, value: String) {
        self.path = path
        self.value = value
    }
}

/// Changes a route makes to what it forwards: the path, the Host field, header fields both ways.
public struct RouteRewrite: Sendable, Codable, Equatable {
    /// Remove the route's path_prefix from the path.
    public var stripPrefix = false
    /// Replace the route's path_prefix with this.
    public var replacePrefix: String?
    /// Replace the path with `replacement` where this regular expression matches ($1, $2, ...: its groups).
    public var regex: String?
    public var replacement: String?
    /// The Host field sent upstream instead of the client's.
    public var upstreamHost: String?
    public var requestHeaders = HeaderEditSettings()
    public var responseHeaders = HeaderEditSettings()

    public init() {}
}

/// `connect_timeout`, `response_timeout` and `timeout` of a route (nil: the pool's, or none for `timeout`).
public struct RouteTimeouts: Sendable, Codable, Equatable {
    public var connect: Duration?
    /// To the first byte of the response head, from the end of the request.
    public var response: Duration?
    /// The whole exchange, from the request head to the end of the response.
    public var total: Duration?
    /// The longest pause between two reads of a response that has begun (while the client keeps up).
    public var read: Duration?

    public init() {}
}

/// `retries`, `retry_on`, `retry_non_idempotent` of a route.
public struct RetrySettings: Sendable, Codable, Equatable {
    public var retries = 1
    /// "reset" and statuses such as "502".
    public var on = ["reset", "502", "503", "504"]
    public var nonIdempotent = false

    public init() {}
}

/// `request_headers` / `response_headers`: fields to set (replacing), add, or remove.
public struct HeaderEditSettings: Sendable, Codable, Equatable {
    public var set: [HeaderPair] = []
    public var add: [HeaderPair] = []
    public var remove: [String] = []

    public init() {}

    public var isEmpty: Bool { self.set.isEmpty && add.isEmpty && remove.isEmpty }
}

/// One upstream of a weighted split (`split = [{ upstream = "v1", weight = 95 }, ...]`).
public struct SplitTarget: Sendable, Codable, Equatable {
    public var upstream: String
    public var weight: Int

    public init(upstream: String, weight: Int) {
        self.upstream = upstream
        self.weight = weight
    }
}

/// A condition on a header field or query parameter: equal to a value, matching a regular expression, present
/// or absent.
public struct FieldMatch: Sendable, Codable, Equatable {
    public var name: String
    public var value: String?
    public var regex: String?
    /// true: must be present; false: must be absent; nil: `value` or `regex` decides.
    public var present: Bool?

    public init(name: String, value: String? = nil, regex: String? = nil, present: Bool? = nil) {
        self.name = name
        self.value = value
        self.regex = regex
        self.present = present
    }
}

/// What a route does with a request.
public enum RouteAction: Sendable, Codable, Equatable {
    /// Forward to an upstream pool.
    case proxy(upstream: String)
    /// Forward to one of several pools by weight; with a `key` ("client_ip", "header:NAME", "cookie:NAME"), the
    /// same key always goes to the same pool (for given weights).
    case split(targets: [SplitTarget], key: String?)
    /// Answer directly with a fixed response.
    case respond(status: Int, headers: [HeaderPair], body: String)
    /// Answer with a redirect to `location`.
    case redirect(status: Int, location: String)
}

/// A header name and value, in configuration order.
public struct HeaderPair: Sendable, Codable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// `[upstreams.NAME]`: a pool of servers requests are proxied to.
public struct UpstreamSettings: Sendable, Codable, Equatable {
    /// The values of `balance` (the balancer's algorithms, see JesterCore's UpstreamBalancer).
    public static let balancingAlgorithms = ["round_robin", "least_requests", "random_two", "hash", "least_latency"]

    public var name: String
    /// The servers.
    public var targets: [UpstreamTarget]
    /// One of `balancingAlgorithms`.
    public var balance: String
    /// What `balance = "hash"` hashes: "client_ip", "path", "header:NAME" or "cookie:NAME".
    public var hashKey: String
    /// Consecutive failures that eject a target (0: never).
    public var maxFails: Int
    /// The first ejection's length (doubling per repeat).
    public var failTimeout: Duration
    /// The weight ramp after readmission (0: none).
    public var slowStart: Duration
    /// Targets tried for one request while connecting to them fails.
    public var connectAttempts: Int
    /// Active health checks, run by the master; nil: none.
    public var healthCheck: HealthCheckSettings?
    /// Retries in flight allowed per worker, as a percentage of the pool's requests in flight (at least 3).
    public var retryBudgetPercent = 20
    /// "v1" or "v2": start every connection to a target with a PROXY protocol header naming the client (TCP
    /// listeners only: an HTTP connection to a target carries requests of many clients).
    public var sendProxyProtocol: String?
    /// Fast 503s instead of requests while the pool fails or is at its limit; nil: none.
    public var circuitBreaker: CircuitBreakerSettings?
    /// TLS to the targets (`[upstreams.NAME.tls]`).
    public var tls: UpstreamTLSSettings?
    /// Cookie-based sticky sessions: the cookie's name.
    public var stickyCookie: String?
    /// Requests in flight to one target per worker, at most (nil: no limit); a target at its limit is skipped.
    public var maxRequestsPerTarget: Int?
    /// How often targets given as host names are looked up again (nil: every 30 seconds).
    public var resolveInterval: Duration?
    /// "h2": the targets speak HTTP/2 (prior knowledge, or ALPN over TLS); nil: HTTP/1.1.
    public var protocolName: String?
    /// How long to wait for a TCP connection; slower is a 504.
    public var connectTimeout: Duration
    /// How long to wait for the response head after the request was sent; slower is a 504.
    public var responseTimeout: Duration
    /// Idle keep-alive connections kept per target per worker.
    public var maxIdleConnections: Int
    /// How long an idle upstream connection is kept.
    public var idleTimeout: Duration

    public init(
        name: String, targets: [UpstreamTarget], connectTimeout: Duration = .seconds(5),
        responseTimeout: Duration = .seconds(60), maxIdleConnections: Int = 64, idleTimeout: Duration = .seconds(60),
        balance: String = "round_robin", hashKey: String = "client_ip", maxFails: Int = 5,
        failTimeout: Duration = .seconds(10), slowStart: Duration = .zero, connectAttempts: Int = 3
    ) {
        self.name = name
        self.targets = targets
        self.balance = balance
        self.hashKey = hashKey
        self.maxFails = maxFails
        self.failTimeout = failTimeout
        self.slowStart = slowStart
        self.connectAttempts = connectAttempts
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.maxIdleConnections = maxIdleConnections
        self.idleTimeout = idleTimeout
    }
}
