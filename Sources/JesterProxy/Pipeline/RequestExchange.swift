// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCache
import JesterCore
import JesterMetrics
import JesterTLS
import JesterTracing
import NIOCore

/// One request from its head to its log record, whatever protocol carried it: the decisions of the request's
/// phases, made once here for HTTP/1.1 connections and HTTP/2 streams (and HTTP/3 streams next), which are
/// adapters around it and keep only their framing, flow control and I/O.
///
/// The phases, in order (jester-pipeline(7), Man/jester-pipeline.7, draws them):
///
///     head ─▶ pre-route checks ─▶ route ─▶ request filters ─▶ upstream choice ─▶ upstream ─▶ response ─▶ log
///               (400, 429)        (404,       (continue,        (pool, hash,      (retries,    (edits,
///                                  413, local  respond, fail)    sticky target)    replays)     cookies,
///                                  answer)                                                      filter fields)
///
/// Each decision comes back as a value the adapter carries out (`RouteDecision`, `FilterVerdict`, a retry
/// delay), so the rules are written once and the adapters cannot drift apart again. A value type kept inside its
/// adapter and reset per request: no allocation per request unless the route has filters.
struct RequestExchange {
    /// The request head, parsed over `headBytes` (HTTP/2 requests are translated to the same form).
    var head = HTTPHead()
    var headBytes: ByteBuffer?
    /// The route the request is on: the router's choice, or the one a re-resolve pass chose (`move(to:)`).
    private(set) var route: CompiledRoute?
    private(set) var pool: UpstreamPool?
    var log = AccessLog.Record()
    private(set) var isHeadRequest = false
    private(set) var isIdempotent = false
    private(set) var hasBody = false
    /// The request's balancing hash, for pools that hash (kept for a replay or a retry).
    private(set) var balancingHash: UInt64?
    /// Sticky sessions (`sticky_cookie`): the target the request's cookie names.
    private(set) var stickyTarget: Int?
    /// How often the request was sent again after a reused keep-alive connection failed before answering.
    private(set) var replays = 0
    /// Retries of the request (route `retries`).
    var retries = RetryAttempts()
    /// The request filters' findings and wishes; nil when the route has none.
    private(set) var filterContext: FilterContext?
    /// Whether this request's access-log line is written: each request gets exactly one, however it ends.
    private(set) var isLogged = false
    /// The request's trace, with `[tracing]` (see `RequestExchange+Tracing`): one reference, so an exchange
    /// without tracing stays as small as before (it is reset and copied about on every request).
    var tracingState: ExchangeTrace?
    /// The context the current upstream attempt's request carries (`traceparent`), with `[tracing]`.
    var upstreamTraceContext: TraceContext? { tracingState?.upstream ?? unsampledTrace }
    /// With `[tracing]`, a request whose trace is not recorded (most, at a low ratio): only its context, which
    /// its upstream requests carry (not sampled), kept inline so such a request allocates nothing for tracing.
    var unsampledTrace: TraceContext?
    /// The answering target's index in its pool (the last attempt's), for the request's metrics.
    var upstreamTargetIndex: Int?
    /// How long the last attempt's upstream took to answer (`ExchangeUpstream.responseWait`), for the metrics'
    /// `upstream_response_duration_seconds`: taken from the clock reads the pool makes anyway.
    var upstreamResponseWait: Int64?
    /// What the route's response filters change in the current response (`decideResponse`); nil: nothing.
    var responseEdit: ResponseEdit?
    /// The request's passage through the shared cache, on a route that caches (`RequestExchange+Cache.swift`).
    var cache: CacheExchange?
    /// Whether the request's body is decoded on its way upstream (`decompress_requests`).
    var requestDecoding = RequestDecompression.forward
    /// An unsafe request on a caching route: what its answer may invalidate.
    var pendingInvalidation: CacheRequest?
    /// The request's passage through Wasm policies (metadata, hints, upstream options); nil for a request that
    /// meets none.
    var policyState: PolicyRequestState?
    /// The client spoke TLS (the cache key's scheme).
    private(set) var isSecure = false
    /// The request's id, assigned when first needed (`assignRequestID`).
    private(set) var requestID = RequestID.none

    /// A request id without a string per request: Jester's own as its two random words (rendered as 32 hex
    /// digits where it is written), or the client's as where it sits in `headBytes`.
    enum RequestID: Equatable {
        case none
        case generated(UInt64, UInt64)
        case client(Range<Int>)
    }

    /// Replays per request: a reused connection that fails twice in a row is not a stale keep-alive.
    static let maxReplays = 2

    // MARK: Head

    /// A new request, whose head the adapter has parsed into `head` over `bytes`: its log record starts
    /// (detailed only when an access log, a tap or tracing reads it; timed when metrics observe its duration), and
    /// with `[tracing]` its trace. (The adapter parses in place, so the head's field array is reused from request
    /// to request.) `multiplexed`, `secure`: what the client speaks, for the trace's attributes.
    mutating func begin(
        bytes: ByteBuffer, client: String, runtime: WorkerRuntime, multiplexed: StreamProtocol? = nil,
        secure: Bool = false
    ) {
        headBytes = bytes
        isSecure = secure
        cache = nil
        pendingInvalidation = nil
        requestDecoding = .forward
        route = nil
        hasFilters = false
        pool = nil
        replays = 0
        isHeadRequest = false
        isIdempotent = false
        hasBody = false
        retries.finish()
        filterContext?.cancel()
        filterContext = nil
        stickyTarget = nil
        balancingHash = nil
        requestID = .none
        isLogged = false
        tracingState = nil
        unsampledTrace = nil
        upstreamTargetIndex = nil
        upstreamResponseWait = nil
        responseEdit = nil
        policyState = nil
        // The record's strings are made only when something reads them: the access log, a tap, or a trace that
        // is recorded (its attributes). An unsampled trace needs none of them.
        let logged = runtime.accessLog != nil || runtime.tap.isOpen
        guard let tracing = runtime.tracing else {
            log.begin(head: head, bytes: bytes, client: client, detailed: logged, timed: runtime.metrics != nil)
            return
        }
        let trace = startTrace(tracing)
        log.begin(
            head: head, bytes: bytes, client: client, detailed: logged || trace.isRecording,
            timed: runtime.metrics != nil)
        continueTrace(trace, tracing, multiplexed: multiplexed, secure: secure, logged: logged)
    }

    /// The checks before routing that every protocol makes: `http.max_request_head_size`,
    /// `http.underscores_in_headers = "reject"` and the connection's request rate (`withinConnectionRate`, the
    /// adapter's token bucket). A refusal (status) is recorded in the log record. (Mutating, like every method
    /// adapters call per request: a non-mutating method called on a struct kept in a class is given a copy of the
    /// whole struct, its references retained.)
    mutating func preRouteRefusal(runtime: WorkerRuntime, withinConnectionRate: Bool) -> Int? {
        // Known before any answer, refusals included: a HEAD's answer has no body, whoever gives it.
        (isHeadRequest, isIdempotent) = methodFacts()
        // HTTP/1.1's framing refuses a longer head before it is parsed; an HTTP/2 head (translated) arrives whole,
        // and nghttp2 only announces the limit in SETTINGS. The live tier's test_limits checks both protocols.
        if let headBytes, headBytes.readableBytes > runtime.parserLimits.maxHeadSize {
            log.failure = HTTPParseError.headTooLarge.reason
            return 431
        }
        if runtime.rejectsUnderscoredFields, head.fields.contains(where: \.hasUnderscore) {
            log.failure = HTTPParseError.underscoreInFieldName.reason
            return 400
        }
        if !withinConnectionRate {
            log.failure = "connection_request_rate exceeded"
            return 429
        }
        return nil
    }

    // MARK: Route

    /// What the route phase decided.
    enum RouteDecision {
        /// An error answer (no route, a declared body over the route's limit).
        case refuse(status: Int, reason: String)
        /// The route answers itself (`respond`, `redirect`): its head and body, rendered once per configuration.
        case respond(head: ByteBuffer, body: ByteBuffer)
        /// An answer made for this request before any route (a listener's `redirect_to_https`).
        case local(LocalResponse)
        /// The request goes on to the route's filters, then upstream, or to an answer that names parts of the
        /// request (a redirect with placeholders).
        case proxy
    }

    /// Chooses the route of the request (`body`: the start of the body when some route of the listener looks at
    /// it). `bodyBytesSoFar`: request body already read (while body matchers waited for it).
    /// `clientAddress`: the client's address as text, for the listener's pre-route policies.
    mutating func chooseRoute(
        in routes: ListenerRoutes, client: IPAddressBytes?, tls: TLSRouteFacts?, body: BodyPeek?,
        bodyBytesSoFar: Int64 = 0, clientAddress: String, runtime: WorkerRuntime
    ) -> RouteDecision {
        // With a recorded trace the phase gets its span (`traceRoute`); this check is all other requests pay.
        guard let tracingState, tracingState.trace.isRecording else {
            return decideRoute(
                in: routes, client: client, tls: tls, body: body, bodyBytesSoFar: bodyBytesSoFar,
                clientAddress: clientAddress, runtime: runtime)
        }
        let readBody = body.map { !$0.bytes.isEmpty || !$0.isComplete } ?? false
        let start = readBody ? tracingState.startedAt : WorkerTracing.now
        let decision = decideRoute(
            in: routes, client: client, tls: tls, body: body, bodyBytesSoFar: bodyBytesSoFar,
            clientAddress: clientAddress, runtime: runtime)
        traceRoute(decision, startNanos: start, readBody: readBody)
        return decision
    }

    private mutating func decideRoute(
        in routes: ListenerRoutes, client: IPAddressBytes?, tls: TLSRouteFacts?, body: BodyPeek?,
        bodyBytesSoFar: Int64, clientAddress: String, runtime: WorkerRuntime
    ) -> RouteDecision {
        // Before any answer, routed or not: a HEAD's 404 or redirect has no body either (RFC 9110 §9.3.2).
        if let httpsRedirect = routes.httpsRedirect {
            // The listener only sends clients to HTTPS, keeping what they asked for; 308 keeps method and body.
            log.route = "-"
            guard head.hostField != nil else {
                log.failure = "redirect_to_https needs the request's Host"
                return .refuse(status: 400, reason: log.failure)
            }
            return .local(redirect(status: 308, to: httpsRedirect, secure: false))
        }
        // The listener's pre-route policies may answer, rewrite the request the router reads, or name its route.
        if !routes.preRoutePolicies.isEmpty,
            let decision = runPreRoutePolicies(routes, clientAddress: clientAddress, runtime: runtime)
        {
            log.route = "-"
            return decision
        }
        let matched: CompiledRoute
        switch hintedRoute(in: routes) {
        case .success(let hinted)?:
            matched = hinted
        case .failure(let error)?:
            log.route = "-"
            log.failure = "a pre_route policy chose route '\(error.route)', which this listener does not have"
            return .refuse(status: 500, reason: log.failure)
        case nil:
            guard let found = lookUpRoute(in: routes, client: client, tls: tls, body: body) else {
                log.route = "-"
                return .refuse(status: 404, reason: "")
            }
            matched = found
        }
        route = matched
        if matched.reroutes {
            prepareReroute(routes, client: client, tls: tls, peek: body, clientAddress: clientAddress)
        }
        if let hint = policyState?.upstreamHint, !matched.action.offers(hint) {
            log.failure = "a pre_route policy chose upstream '\(hint)', which route '\(matched.name)' does not send to"
            return .refuse(status: 500, reason: log.failure)
        }
        hasFilters = !matched.filters.isEmpty || !matched.preUpstreamPolicies.isEmpty
        log.route = matched.name
        hasBody = BodyFraming.request(head) != .none
        if let length = head.contentLength, length > matched.maxBodySize {
            return .refuse(status: 413, reason: "")
        }
        if bodyBytesSoFar > matched.maxBodySize {
            return .refuse(status: 413, reason: "request body larger than \(matched.maxBodySize) bytes")
        }
        switch matched.action {
        case .respond(let head, let body): return .respond(head: head, body: body)
        case .proxy, .split, .redirect: return .proxy
        }
    }

    /// The request moves to `next`, which a re-resolve pass chose (`reroute`): the rest of its phases, its log
    /// record and its metrics are that route's.
    mutating func move(to next: CompiledRoute) {
        route = next
        log.route = next.name
    }

    /// The request may go again on a new connection when a reused one fails: idempotent and without a body.
    var isReplayable: Bool { isIdempotent && !hasBody }

    // MARK: Filters

    /// Whether the route has request filters (adapters skip making the resume closure when it has none).
    private(set) var hasFilters = false

    /// The most request body the route's filters read (the pre-upstream phase's opt-in body access): with one,
    /// the adapter holds a request's body back until it has all of it (413 past this), and hands it to
    /// `runFilters`; 0: the filters read the head only.
    var filterBodyLimit: Int { route.map { max($0.filters.bodyLimit, $0.preUpstreamBodyLimit) } ?? 0 }

    /// Runs the route's request filters. Returns the verdict, or nil when a filter waits: then the adapter sets
    /// `whenFiltersDecide` (once, at once), and that gets the verdict later, on the event loop, never after
    /// `cancelFilters`.
    /// The route's pre-upstream policies run after its filters said go on (`runPreUpstreamPolicies`), on the
    /// same body.
    mutating func runFilters(
        clientAddress: String, clientIP: IPAddressBytes?, tls: TLSSessionFacts?, body: [UInt8]? = nil,
        runtime: WorkerRuntime
    ) -> FilterVerdict? {
        guard let route, let headBytes else { return .proceed }
        if !route.preUpstreamPolicies.isEmpty {
            let state = policyState(clientAddress: clientAddress)
            state.heldBody = body
            state.rerouteInputs?.session = tls
        }
        guard !route.filters.isEmpty else { return filtersFinished(.proceed, runtime: runtime) }
        let input = FilterInput(
            head: head, bytes: headBytes, clientAddress: clientAddress, clientIP: clientIP, route: route, tls: tls,
            now: .now(), body: body)
        guard let verdict = startFilters(route.filters, input: input) else { return nil }
        return filtersFinished(verdict, runtime: runtime)
    }

    /// Starts a run of `chain` (the chosen route's, or the route a re-resolve pass chose): its verdict, or nil
    /// when a filter waits.
    mutating func startFilters(_ chain: FilterChain, input: FilterInput) -> FilterVerdict? {
        let context = FilterContext(chain: chain, input: input)
        // A recorded trace makes a span of each filter; other requests' runs have no observer.
        if let tracingState, tracingState.trace.isRecording { context.observer = tracingState }
        filterContext = context
        return context.start()
    }

    /// The filters decided (at once, or after waiting: the adapters call this with a verdict that came later):
    /// on `.proceed` the route's pre-upstream policies decide, and when one of them sent the request to another
    /// route (`policy_reroute`), that route's filters and policies (`reroute`). The final verdict is recorded and
    /// returned; nil when the other route's filters wait (the adapter waits again, through `whenFiltersDecide`).
    mutating func filtersFinished(_ verdict: FilterVerdict, runtime: WorkerRuntime) -> FilterVerdict? {
        var verdict = verdict
        if case .proceed = verdict, let state = policyState {
            let body = state.heldBody
            state.heldBody = nil
            verdict = runPreUpstreamPolicies(body: body, clientAddress: state.clientAddress, runtime: runtime)
            if case .proceed = verdict, state.reroute != nil {
                let first = route
                if let refusal = reroute(state, body: body) {
                    verdict = refusal
                } else if route !== first {
                    return runReroutedFilters(state, body: body, runtime: runtime)
                }
            }
            // A pool named by a policy, at either stage, must be one the request's (final) route sends to.
            if case .proceed = verdict, let hint = state.upstreamHint, let route, !route.action.offers(hint) {
                verdict = .fail(
                    status: 500, reason: "a policy chose upstream '\(hint)', which route '\(route.name)' does not send to")
            }
        }
        note(verdict)
        return verdict
    }

    /// Drops what a finished filter run found and asked for (fields for the upstream and the response), when a
    /// re-resolve pass moved the request to another route; who the client proved to be stays in the log record.
    mutating func forgetFilterRun() {
        if let user = filterContext?.user { log.user = user }
        filterContext = nil
    }

    /// Where the verdict of filters that wait goes (see `runFilters`). Made only for runs that wait, so a request
    /// whose filters decide at once allocates no closure.
    mutating func whenFiltersDecide(_ decision: @escaping (FilterVerdict) -> Void) {
        filterContext?.onDecision = decision
    }

    /// Records a verdict that arrived later (see `runFilters`).
    mutating func note(_ verdict: FilterVerdict) {
        switch verdict {
        case .proceed: break
        case .respond(_, let reason), .fail(_, let reason): log.failure = reason
        }
    }

    /// The request is abandoned (the client left): a filter still waiting must not resume it.
    mutating func cancelFilters() {
        filterContext?.cancel()
    }

    /// Fields the filters (and the cache: stripped unkeyed fields, its own validators) set on the upstream
    /// request; an empty value drops the client's field of that name.
    var upstreamFilterFields: [LocalResponse.Field] {
        var fields = filterContext?.upstreamFields ?? []
        if let cache { fields += cache.upstreamFields }
        // A decoded body is plain: its coding does not go upstream.
        if decodesRequestBody { fields.append(LocalResponse.Field("Content-Encoding", "")) }
        return fields
    }

    // MARK: Upstream choice

    /// Chooses the pool (a split route weighs several), the request's balancing hash and its sticky target.
    @discardableResult
    mutating func chooseUpstream(clientAddress: String, runtime: WorkerRuntime) -> UpstreamPool {
        // A policy's `set-upstream` (checked against the route's pools when it was made) replaces the split's
        // choice; the balancing hash and the sticky target are then that pool's.
        let hinted = policyState?.upstreamHint.flatMap { route!.action.pool(named: $0) }
        let chosen: UpstreamPool
        (chosen, balancingHash, stickyTarget) = upstreamChoice(route: route!, clientAddress: clientAddress, pool: hinted)
        pool = chosen
        log.upstream = chosen.name
        startCache(runtime: runtime)
        decideRequestDecoding()
        return chosen
    }

    // MARK: Second attempts

    // (Non-mutating helpers: reading `head` through a borrowed `self` copies nothing, where a mutating method's
    // closures would copy the head, and retain its field array, on every request.)

    private func lookUpRoute(
        in routes: ListenerRoutes, client: IPAddressBytes?, tls: TLSRouteFacts?, body: BodyPeek?
    ) -> CompiledRoute? {
        headBytes?.withUnsafeReadableBytes {
            routes.match($0, head: head, client: client, tls: tls, body: body, tags: policyState?.routeTags ?? [])
        }
    }

    /// The method's facts again, for a head a policy rewrote.
    mutating func refreshMethodFacts() {
        (isHeadRequest, isIdempotent) = methodFacts()
    }

    private func methodFacts() -> (isHead: Bool, isIdempotent: Bool) {
        headBytes!.withUnsafeReadableBytes {
            (RequestMethod.isHead($0, head.method), RequestMethod.isIdempotent($0, head.method))
        }
    }

    private func upstreamChoice(
        route: CompiledRoute, clientAddress: String, pool hinted: UpstreamPool?
    ) -> (UpstreamPool, UInt64?, Int?) {
        headBytes!.withUnsafeReadableBytes { bytes in
            let pool = hinted ?? route.action.pool(head: head, bytes: bytes, clientAddress: clientAddress)!
            let hash = pool.hashKey(head: head, bytes: bytes, clientAddress: clientAddress)
            let sticky = pool.stickyCookie.flatMap { name in
                BalancingKey.cookie(name, head: head, bytes: bytes).flatMap {
                    pool.stickyTarget(UnsafeRawBufferPointer(rebasing: bytes[$0]))
                }
            }
            return (pool, hash, sticky)
        }
    }

    /// Whether to send the request again on a fresh connection after `failure` on a connection that had served
    /// `completedExchanges` before: an upstream may close a keep-alive connection just as a request goes out on
    /// it (its idle timeout, a restart). Nothing was answered, so an idempotent request without a body goes again,
    /// as nginx and HAProxy do; anything else would be a guess about what the origin did.
    mutating func replayAllowed(
        after failure: UpstreamFailure, completedExchanges: Int, runtime: WorkerRuntime
    ) -> Bool {
        guard case .closedEarly = failure, completedExchanges > 0, isReplayable, replays < Self.maxReplays else {
            return false
        }
        replays += 1
        runtime.counters.upstreamReplays &+= 1
        log.failure = ""
        return true
    }

    /// The backoff before sending the request again to another target after `reason` on `target` of `pool`, when
    /// the route's retry policy and the pool's retry budget allow it; nil when they do not. Only a request whose
    /// body is complete can go again (its body was not kept).
    mutating func retryDelay(
        after reason: RetryPolicy.Reason, target: Int, pool: UpstreamPool, requestComplete: Bool, runtime: WorkerRuntime
    ) -> TimeAmount? {
        guard let route, requestComplete else { return nil }
        var policy = route.retryPolicy
        if let limit = policyState?.retries { policy.maxRetries = limit }
        switch retries.next(after: reason, policy: policy, idempotent: isIdempotent, hasBody: hasBody,
            target: target, pool: pool)
        {
        case .notAllowed:
            return nil
        case .budgetExhausted:
            log.failure += "; retry budget exhausted"
            return nil
        case .retry(let seconds):
            runtime.counters.upstreamRetries &+= 1
            log.failure = ""
            return .nanoseconds(Int64(seconds * 1e9))
        }
    }

    // MARK: Request id

    /// Forgets the request's id, so it is found again (in a head a policy rewrote).
    mutating func clearRequestID() {
        requestID = .none
    }

    /// Gives the request its id unless it has one: the client's own (`http.request_id_header`, 1–128 bytes), so
    /// one id follows the request through every hop's logs, or a new one.
    mutating func assignRequestID(runtime: WorkerRuntime) {
        guard requestID == .none else { return }
        if let headBytes, let range = clientRequestID(in: headBytes, runtime: runtime) {
            requestID = .client(range)
        } else {
            let words = runtime.requestIDs.nextWords()
            requestID = .generated(words.0, words.1)
        }
    }

    /// Calls `body` with the request id's bytes (assigning one first if needed).
    mutating func withRequestID<Result>(
        runtime: WorkerRuntime, _ body: (UnsafeRawBufferPointer) -> Result
    ) -> Result {
        assignRequestID(runtime: runtime)
        switch requestID {
        case .client(let range):
            return headBytes!.withUnsafeReadableBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        case .generated(let high, let low):
            return RequestIDGenerator.withID(high, low, body)
        case .none:
            return body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
    }

    /// Where the client's request id is in `bytes`, when it sent a usable one.
    private func clientRequestID(in bytes: ByteBuffer, runtime: WorkerRuntime) -> Range<Int>? {
        let index = bytes.withUnsafeReadableBytes { Self.requestIDFieldIndex(in: head, $0, runtime: runtime) }
        guard let value = index.map({ head.fields[$0].value }), !value.isEmpty,
            value.count <= HTTPSettings.maxClientRequestIDLength
        else { return nil }
        return value
    }

    // MARK: Response

    /// The `Set-Cookie` value that sticks the client to `target` of `pool`, when the pool is sticky and the client
    /// is new to it (its cookie named `stickyTarget`, another target or none, or its target went away); nil
    /// otherwise. Static, so adapters call it without copying the exchange.
    static func stickyCookie(pool: UpstreamPool, target: Int, stickyTarget: Int?, secure: Bool) -> String? {
        // (A cache answer names no target, `Int.max`: the client stays where it was.)
        guard let name = pool.stickyCookie, target != stickyTarget, target < pool.stickyTokens.count else { return nil }
        let token = String(decoding: pool.stickyTokens[target], as: UTF8.self)
        return "\(String(decoding: name, as: UTF8.self))=\(token); Path=/; HttpOnly; SameSite=Lax"
            + (secure ? "; Secure" : "")
    }

    // MARK: End

    /// Counts the finished request in the instance's metrics (jester-metrics(7)): by listener, route, upstream,
    /// target, protocol and status class, with its duration and bytes; its retries and replays; and how long its
    /// (last) upstream took to answer. (Counted here, once, rather than as each happens: the route's and target's
    /// ids are looked up once per request.)
    private func countRequest(_ metrics: WorkerMetrics, listener: ListenerMetricIDs, protocol: StaticString) {
        let routeIDs = route.flatMap { metrics.routeIDs($0, listener: listener.name) }
        let target = pool?.metrics.flatMap { pool in
            upstreamTargetIndex.flatMap { index in index < pool.targets.count ? pool.targets[index] : nil }
        }
        // ("HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/3": the digit after the slash.)
        let proto: MetricProtocol
        switch `protocol`.utf8CodeUnitCount > 5 ? `protocol`.utf8Start[5] : 0 {
        case UInt8(ascii: "2"): proto = .http2
        case UInt8(ascii: "3"): proto = .http3
        default: proto = .http1
        }
        if let target, let wait = upstreamResponseWait {
            metrics.upstreamResponded(target: target, nanoseconds: wait)
        }
        if let routeIDs, let pool, replays > 0 || retries.made > 0 {
            for _ in 0..<replays { metrics.replay(route: routeIDs, upstream: pool.name) }
            for _ in 0..<retries.made { metrics.retry(route: routeIDs, upstream: pool.name) }
        }
        let end = log.ended ?? .now()
        metrics.requestFinished(
            listener: listener, route: routeIDs, upstream: pool?.name, target: target, protocol: proto,
            status: log.status, durationNanoseconds: (end - log.start).nanoseconds, bytesIn: Int64(log.bytesIn),
            bytesOut: Int64(log.bytesOut))
    }

    /// Whether a request is under way: begun, and not yet ended.
    var isUnderWay: Bool { headBytes != nil }

    /// The request is over (after its log line): a retry budget slot goes back, a waiting filter is let go.
    mutating func end() {
        cache = nil
        retries.finish()
        cancelFilters()
        route = nil
        pool = nil
        headBytes = nil
        requestID = .none
    }

    /// The log phase, once per request that got that far: the request is counted in the metrics (with
    /// `listener`, the adapter's listener ids), and, when someone reads it, its record is written to the access
    /// log, offered to open taps, and its trace ended and queued for export.
    mutating func writeLog(
        status: Int? = nil, protocol: StaticString, tls: TLSSessionFacts?, runtime: WorkerRuntime,
        listener: ListenerMetricIDs? = nil
    ) {
        if let status { log.status = status }
        guard !isLogged, route != nil || log.status != 0 else { return }
        isLogged = true
        // A post-response policy that replaced the upstream's answer says why.
        if let failure = policyState?.failure { log.failure = failure }
        if let metrics = runtime.metrics, let listener {
            countRequest(metrics, listener: listener, protocol: `protocol`)
        }
        if runtime.accessLog != nil || runtime.tap.isOpen {
            if let user = filterContext?.user { log.user = user }
            log.requestID = withRequestID(runtime: runtime) { String(decoding: $0, as: UTF8.self) }
            runtime.accessLog?.write(log, protocol: `protocol`, tls: tls)
            if runtime.tap.isOpen { runtime.tap.offer(log, protocol: `protocol`, tls: tls) }
        }
        if tracingState != nil { finishTrace(runtime: runtime) }
    }
}
