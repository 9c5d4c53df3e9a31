// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterWasm
import NIOCore

/// One request's passage through Wasm policies (jester-policy(7)): the metadata bag they pass along, and what
/// they asked of the rest of the request. Made only for requests that meet a policy; one reference in the exchange,
/// so requests without policies stay as small as before.
final class PolicyRequestState {
    /// The bag policies pass data in, from pre-route to post-response.
    var metadata = PolicyMetadata()
    /// The client's address as text, for every stage's context.
    let clientAddress: String
    /// pre-route `set-route`: the route to use instead of the router's choice.
    var routeHint: String?
    /// pre-route `add-route-tag`: tags the router matches routes' `policy_tags` against.
    var routeTags: [String] = []
    /// pre-route or pre-upstream `set-upstream`: the pool of the route's to use.
    var upstreamHint: String?
    /// pre-upstream `set-upstream-timeout`: the upstream's response timeout for this request.
    var responseTimeout: TimeAmount?
    /// pre-upstream `set-upstream-retries`: the most retries for this request.
    var retries: Int?
    /// pre-upstream `set-body`: the body that goes upstream instead of the client's.
    var replacementBody: [UInt8]?
    /// What post-response policies changed in the fields of the response going to the client, for the response
    /// phase (`decideResponse`) to apply with the route's own response filters; taken once.
    var responseEdit: ResponseEdit?
    /// Why a post-response policy replaced the upstream's answer, for the access log.
    var failure: String?
    /// The body pre-upstream policies read, kept while the route's filters wait (a Redis round trip).
    var heldBody: [UInt8]?
    /// On a route with `policy_reroute`: what the re-resolve pass reads (`RequestExchange+Reroute.swift`).
    var rerouteInputs: RerouteInputs?
    /// pre-upstream `set-route` or `add-route-tag` there: the pass asked for.
    var reroute: RerouteRequest?
    /// The pass ran: the new route's policies cannot ask for another.
    var rerouted = false

    init(clientAddress: String) {
        self.clientAddress = clientAddress
    }
}

/// How a policy stage ended a request: its own answer, or a refusal with a status (a deny, or a failed call:
/// fail closed). `reason` goes to the access log's `error` field.
enum PolicyStop {
    case respond(LocalResponse, reason: String)
    case refuse(status: Int, reason: String)

    var verdict: FilterVerdict {
        switch self {
        case .respond(let response, let reason): .respond(response, reason: reason)
        case .refuse(let status, let reason): .fail(status: status, reason: reason)
        }
    }
}

/// Fields whose edits would change how the request or response is framed or how the connection behaves: a
/// policy may not touch them (its call fails closed), since framing is the adapters', decided once from what the
/// client sent.
enum PolicyManagedFields {
    static let names: Set<String> = [
        "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "proxy-connection",
        "trailer", "expect",
    ]

    /// The first edit that touches a managed field (or removes Host from a request), if any.
    static func violation(in edits: [FieldEdit], request: Bool) -> String? {
        for edit in edits {
            let name: String
            switch edit {
            case .set(let field), .add(let field): name = field.name.lowercased()
            case .remove(let removed):
                name = removed.lowercased()
                if request, name == "host" { return "a request keeps its Host: remove-header host is not allowed" }
            }
            if names.contains(name) { return "\(name) is managed by Jester (framing and connection fields)" }
        }
        return nil
    }
}

extension RequestExchange {
    // MARK: Contexts

    /// The request as a policy sees it at `stage` (non-mutating: see "Second attempts" in RequestExchange).
    func policyContext(clientAddress: String, body: [UInt8]?) -> PolicyContext {
        headBytes!.withUnsafeReadableBytes { raw in
            func text(_ range: Range<Int>) -> String {
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self)
            }
            var context = PolicyContext()
            context.method = text(head.method)
            context.scheme = isSecure ? "https" : "http"
            if !head.absoluteAuthority.isEmpty {
                context.authority = text(head.absoluteAuthority)
            } else if let host = head.hostField {
                context.authority = text(head.fields[host].value)
            }
            context.path = text(head.path)
            if head.path.upperBound < head.target.upperBound {
                context.query = text(head.path.upperBound + 1..<head.target.upperBound)
            }
            context.clientAddress = clientAddress
            context.requestHeaders = head.fields.map {
                PolicyField(PolicyFieldName.lowercase(UnsafeRawBufferPointer(rebasing: raw[$0.name])), text($0.value))
            }
            context.requestBody = body
            context.route = route?.name
            return context
        }
    }

    // MARK: Request stages

    /// Runs `policies` at a request stage (pre-route or pre-upstream), in order, each seeing what the ones before
    /// changed; nil when the request goes on (changed as they said), else how it ends.
    mutating func runRequestPolicies(
        _ policies: [WorkerPolicy], stage: PolicyStage, body: [UInt8]?, clientAddress: String, runtime: WorkerRuntime
    ) -> PolicyStop? {
        let state = policyState(clientAddress: clientAddress)
        let reroute: RerouteAllowance = stage == .preUpstream ? rerouteAllowance : .refused("")
        let check = { [hasBody, route, isHeadRequest] (outcome: PolicyOutcome) in
            Self.problem(
                in: outcome, stage: stage, hasBody: hasBody, isHead: isHeadRequest, route: route, reroute: reroute)
        }
        for policy in policies {
            // The held body fits the largest limit of the route's readers; one over this policy's is refused as
            // too large for it, not handed to it to fail on.
            if let limit = policy.bodyLimit, let body, body.count > limit {
                let reason = "request body larger than \(limit) bytes, the most policy \(policy.name) reads"
                log.failure = reason
                return .refuse(status: 413, reason: reason)
            }
            let context = policyContext(clientAddress: clientAddress, body: policy.bodyLimit == nil ? nil : body)
            let outcome: PolicyOutcome
            if let tracingState, tracingState.trace.isRecording {
                outcome = tracingState.traced(policy, stage) {
                    policy.run(stage, context: context, metadata: &state.metadata, check: check)
                }
            } else {
                outcome = policy.run(stage, context: context, metadata: &state.metadata, check: check)
            }
            switch outcome {
            case .proceed(let mutations):
                if mutations.isEmpty { continue }
                if let problem = apply(mutations, stage: stage, policy: policy, context: context, runtime: runtime) {
                    return refusedByFailure(policy, stage: stage, problem)
                }
            case .proceedResponse:
                return refusedByFailure(policy, stage: stage, "a response action at a request stage")
            case .respond(let response):
                let reason = "policy \(policy.name) answered at \(stage)"
                log.failure = reason
                return .respond(Self.localResponse(response), reason: reason)
            case .deny(let why):
                let reason = "policy \(policy.name) denied at \(stage)" + (why.isEmpty ? "" : ": \(why)")
                log.failure = reason
                return .refuse(status: policy.settings.denyStatus, reason: reason)
            case .failed(let failure):
                return refusedByFailure(policy, stage: stage, failure.description)
            }
        }
        return nil
    }

    /// The request's policy state, made on first use.
    mutating func policyState(clientAddress: String) -> PolicyRequestState {
        if let policyState { return policyState }
        let state = PolicyRequestState(clientAddress: clientAddress)
        policyState = state
        return state
    }

    private mutating func refusedByFailure(_ policy: WorkerPolicy, stage: PolicyStage, _ problem: String) -> PolicyStop {
        let reason = "policy \(policy.name) failed at \(stage): \(problem)"
        log.failure = reason
        return .refuse(status: policy.settings.errorStatus, reason: reason)
    }

    /// Carries out a request stage's changes: fields, method, path and query by re-rendering the head (which the
    /// router, the filters and the upstream request then read as if the client had sent it), routing hints and
    /// upstream options into the request's policy state. A problem (a managed field, an unknown route) fails
    /// the call.
    /// What the exchange refuses in an action a request stage returned, before carrying any of it out (the call
    /// then counts as failed): fields Jester manages, a response action, changes the request cannot take.
    /// `reroute`: at pre-upstream, whether the call may ask for another route (`policy_reroute`).
    static func problem(
        in outcome: PolicyOutcome, stage: PolicyStage, hasBody: Bool, isHead: Bool, route: CompiledRoute?,
        reroute: RerouteAllowance = .refused("")
    ) -> String? {
        switch outcome {
        case .proceed(let mutations):
            if let problem = PolicyManagedFields.violation(in: mutations.fields, request: true) { return problem }
            // The client's answer is framed for the method it sent: a GET answered as a HEAD would wait for a body.
            if let method = mutations.method, (method == "HEAD") != isHead || method == "CONNECT" {
                return "set-method \(method): a request cannot become or stop being a HEAD (or become a CONNECT)"
            }
            // The client's body is read and dropped as it comes and the replacement sent at its end: a request
            // without a body has no end to send it at.
            if mutations.body != nil, !hasBody { return "set-body on a request without a body" }
            // At pre-upstream the route is chosen: another one only through the re-resolve pass a route opts into.
            var target = route
            if stage == .preUpstream, case .allowed(let routes) = reroute {
                if let name = mutations.routeHint.route, routes.route(named: name) == nil {
                    return "set-route \(name): the listener has no route of that name"
                }
                // The route the request ends on is known after the stage: a pool named now is checked then
                // (`filtersFinished`), unless this very call names the route.
                target = mutations.routeHint.route.flatMap { routes.route(named: $0) }
            } else if stage == .preUpstream, mutations.routeHint.route != nil || !mutations.routeHint.tags.isEmpty,
                case .refused(let why) = reroute
            {
                return "\(mutations.routeHint.route != nil ? "set-route" : "add-route-tag") at pre_upstream: \(why)"
            }
            if let upstream = mutations.routeHint.upstream, let target, !target.action.offers(upstream) {
                return "set-upstream: route '\(target.name)' does not send to upstream '\(upstream)'"
            }
            if mutations.upstreamTimeoutMilliseconds == 0 { return "set-upstream-timeout of 0 ms" }
            return nil
        case .proceedResponse:
            return "a response action at a request stage"
        case .respond(let response):
            return PolicyManagedFields.violation(in: response.fields.map { .set($0) }, request: false)
        case .deny, .failed:
            return nil
        }
    }

    /// Carries out a request stage's changes (checked by `problem(in:)` already).
    private mutating func apply(
        _ mutations: RequestMutations, stage: PolicyStage, policy: WorkerPolicy, context: PolicyContext,
        runtime: WorkerRuntime
    ) -> String? {
        let state = policyState!
        if let body = mutations.body { state.replacementBody = body }
        // pre-route hints steer the router; pre-upstream ones ask for the re-resolve pass (a name over tags).
        if let route = mutations.routeHint.route {
            if stage == .preRoute { state.routeHint = route } else { state.reroute = .route(route) }
        }
        state.routeTags += mutations.routeHint.tags
        if stage == .preUpstream, !mutations.routeHint.tags.isEmpty, state.reroute == nil { state.reroute = .router }
        if let upstream = mutations.routeHint.upstream { state.upstreamHint = upstream }
        // Bounded like the route's own settings: a timeout up to an hour, retries up to the configuration's most.
        if let milliseconds = mutations.upstreamTimeoutMilliseconds {
            state.responseTimeout = .milliseconds(Int64(min(milliseconds, 3_600_000)))
        }
        if let retries = mutations.upstreamRetries { state.retries = Int(min(retries, 10)) }
        guard !mutations.fields.isEmpty || mutations.method != nil || mutations.path != nil || mutations.query != nil
        else { return nil }
        var fields = context.requestHeaders
        for edit in mutations.fields {
            switch edit {
            case .set(let field):
                fields.removeAll { $0.name == field.name.lowercased() }
                fields.append(PolicyField(field.name.lowercased(), field.value))
            case .add(let field):
                fields.append(PolicyField(field.name.lowercased(), field.value))
            case .remove(let name):
                fields.removeAll { $0.name == name.lowercased() }
            }
        }
        return rewriteHead(
            method: mutations.method ?? context.method, path: mutations.path ?? context.path,
            query: mutations.query ?? context.query, authority: context.authority, fields: fields, runtime: runtime)
    }

    /// Renders the request head anew (origin-form target, the client's HTTP version) and parses it with the same
    /// strict parser as every request; nil when it parsed, else why not.
    private mutating func rewriteHead(
        method: String, path: String, query: String, authority: String, fields: [PolicyField], runtime: WorkerRuntime
    ) -> String? {
        var bytes = runtime.allocator.buffer(capacity: 256 + fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
        bytes.writeString(method)
        bytes.writeStaticString(" ")
        bytes.writeString(path)
        if !query.isEmpty {
            bytes.writeStaticString("?")
            bytes.writeString(query)
        }
        bytes.writeStaticString(head.version == .http1_0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
        // An absolute-form target named the host; the origin-form head carries it in Host.
        let hasHost = fields.contains { $0.name == "host" }
        if !hasHost, !authority.isEmpty {
            bytes.writeStaticString("host: ")
            bytes.writeString(authority)
            bytes.writeStaticString("\r\n")
        }
        for field in fields {
            bytes.writeString(field.name)
            bytes.writeStaticString(": ")
            bytes.writeString(field.value)
            bytes.writeStaticString("\r\n")
        }
        bytes.writeStaticString("\r\n")
        var rewritten = HTTPHead()
        let parser = HTTPHeadParser(limits: runtime.parserLimits)
        if let error = bytes.withUnsafeReadableBytes({ parser.parseRequest($0, into: &rewritten) }) {
            return "the rewritten request is not valid: \(error.reason)"
        }
        head = rewritten
        headBytes = bytes
        // A client request id pointed into the old bytes: it is found again in the new ones.
        if case .client = requestID { clearRequestID() }
        // A new method changes what the answer may carry (HEAD) and what may be sent again (idempotence).
        refreshMethodFacts()
        return nil
    }

    /// A policy's own answer, as every adapter renders answers.
    /// A 204 or 304 carries no body (RFC 9110 §6.4.1), whatever the policy gave it.
    static func localResponse(_ response: PolicyResponse) -> LocalResponse {
        let bodiless = response.status == 204 || response.status == 304
        return LocalResponse(
            status: response.status, fields: response.fields.map { LocalResponse.Field($0.name, $0.value) },
            body: bodiless ? ByteBuffer() : ByteBuffer(bytes: response.body))
    }

    // MARK: pre-route

    /// The listener's pre-route policies (before routing): nil to go on, else the route decision that ends the
    /// request.
    mutating func runPreRoutePolicies(
        _ routes: ListenerRoutes, clientAddress: String, runtime: WorkerRuntime
    ) -> RouteDecision? {
        guard let stop = runRequestPolicies(
            routes.preRoutePolicies, stage: .preRoute, body: nil, clientAddress: clientAddress, runtime: runtime)
        else { return nil }
        switch stop {
        case .respond(let response, _): return .local(response)
        case .refuse(let status, let reason): return .refuse(status: status, reason: reason)
        }
    }

    /// The route a pre-route policy named (`set-route`), or why it cannot be used.
    func hintedRoute(in routes: ListenerRoutes) -> Result<CompiledRoute, PolicyHintError>? {
        guard let name = policyState?.routeHint else { return nil }
        guard let route = routes.route(named: name) else { return .failure(PolicyHintError(route: name)) }
        return .success(route)
    }

    // MARK: pre-upstream

    /// The route's pre-upstream policies, after its filters said go on: the verdict the request goes on with.
    mutating func runPreUpstreamPolicies(body: [UInt8]?, clientAddress: String, runtime: WorkerRuntime) -> FilterVerdict {
        guard let route else { return .proceed }
        // A route a re-resolve pass moved the request to runs its own (its listener's ran on the first route).
        let policies = policyState?.rerouted == true ? route.ownPreUpstreamPolicies : route.preUpstreamPolicies
        guard !policies.isEmpty else { return .proceed }
        let stop = runRequestPolicies(
            policies, stage: .preUpstream, body: body, clientAddress: clientAddress,
            runtime: runtime)
        // (A pool a policy named is checked against the route the request ends on, in `filtersFinished`.)
        return stop?.verdict ?? .proceed
    }

    /// The attempt's upstream as the adapter sees it: wrapped by the route's post-response policies when it has
    /// some (`PolicyResponseUpstream`), so they decide on the response before the adapter gets it. Cache answers
    /// too: a response is a response, wherever it came from.
    mutating func withResponsePolicies(
        _ upstream: any ExchangeUpstream, clientAddress: String, runtime: WorkerRuntime
    ) -> any ExchangeUpstream {
        guard let route, !route.postResponsePolicies.isEmpty else { return upstream }
        let state = policyState(clientAddress: clientAddress)
        return PolicyResponseUpstream(
            wrapping: upstream, policies: route.postResponsePolicies, state: state,
            request: policyContext(clientAddress: clientAddress, body: nil), isHeadRequest: isHeadRequest,
            allocator: runtime.allocator, trace: tracingState.flatMap { $0.trace.isRecording ? $0 : nil })
    }

    /// The response timeout of this request's attempts: a pre-upstream policy's, the route's, or the pool's.
    func responseTimeout(pool: UpstreamPool) -> TimeAmount {
        policyState?.responseTimeout ?? route?.responseTimeout ?? pool.responseTimeout
    }
}

/// A pre-route policy named a route the listener does not have.
struct PolicyHintError: Error {
    let route: String
}

extension CompiledRoute.Action {
    /// Whether the route sends requests to the pool called `upstream`.
    func offers(_ upstream: String) -> Bool {
        switch self {
        case .proxy(let pool): pool.name == upstream
        case .split(let chooser): chooser.pools.contains { $0.name == upstream }
        case .respond, .redirect: false
        }
    }

    /// The pool called `upstream` among the route's.
    func pool(named upstream: String) -> UpstreamPool? {
        switch self {
        case .proxy(let pool): pool.name == upstream ? pool : nil
        case .split(let chooser): chooser.pools.first { $0.name == upstream }
        case .respond, .redirect: nil
        }
    }
}
