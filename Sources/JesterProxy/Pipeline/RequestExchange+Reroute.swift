// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterTLS

// The re-resolve pass (jester-policy(7), ROUTING HINTS): on a route with `policy_reroute`, a pre-upstream policy
// (which may read the body, unlike a pre-route one) can send the request to another route of the listener, by
// name (`set-route`) or through the router with its tags (`add-route-tag`). The request then goes through that
// route as if it had been chosen first: its body limit, its filters (which may wait, on Redis), its pre-upstream
// policies, its upstream, its post-response policies. Once only: the new route's policies cannot ask again, so a
// request never loops between routes.

/// What the re-resolve pass needs to look the route up again and run the new route's filters, kept when a route
/// with `policy_reroute` is chosen.
struct RerouteInputs {
    let routes: ListenerRoutes
    let client: IPAddressBytes?
    let tls: TLSRouteFacts?
    /// The body matchers' peek at routing, for a lookup when no policy held the whole body.
    let peek: BodyPeek?
    /// The connection's TLS facts, for the new route's filters (given when the filters run).
    var session: TLSSessionFacts?
}

/// What a pre-upstream policy asked of the re-resolve pass.
enum RerouteRequest: Equatable {
    /// `set-route`: the listener's route of this name.
    case route(String)
    /// `add-route-tag`: whichever route the router chooses with the request's tags (and its rewritten head).
    case router
}

/// Whether a pre-upstream call may ask for another route: the listener's routes to check a name against, or why
/// not (the call then fails closed rather than being ignored).
enum RerouteAllowance {
    case allowed(ListenerRoutes)
    case refused(String)
}

extension RequestExchange {
    /// Whether the current route's pre-upstream policies may ask for another route now.
    var rerouteAllowance: RerouteAllowance {
        if let state = policyState, state.rerouted {
            return .refused("the request was re-routed once already (one re-resolve pass)")
        }
        if let inputs = policyState?.rerouteInputs { return .allowed(inputs.routes) }
        return .refused("route '\(route?.name ?? "-")' does not set policy_reroute")
    }

    /// Keeps what the re-resolve pass reads, when the chosen route lets its policies re-route.
    mutating func prepareReroute(
        _ routes: ListenerRoutes, client: IPAddressBytes?, tls: TLSRouteFacts?, peek: BodyPeek?, clientAddress: String
    ) {
        policyState(clientAddress: clientAddress).rerouteInputs = RerouteInputs(
            routes: routes, client: client, tls: tls, peek: peek)
    }

    /// The re-resolve pass, after the first route's pre-upstream policies went on and one of them asked for another
    /// route: the route is looked up again and the request moves to it (`move(to:)`; the router's choice may be
    /// the same route, which then goes on as if nothing was asked). Nil when the request goes on, else the
    /// refusal it ends with.
    mutating func reroute(_ state: PolicyRequestState, body: [UInt8]?) -> FilterVerdict? {
        guard let request = state.reroute, let inputs = state.rerouteInputs, let headBytes, let current = route else {
            return nil
        }
        state.reroute = nil
        state.rerouted = true
        let next: CompiledRoute
        switch request {
        case .route(let name):
            // (The name was checked when the policy asked.)
            guard let named = inputs.routes.route(named: name) else {
                return failed(500, "a pre_upstream policy chose route '\(name)', which this listener does not have")
            }
            next = named
        case .router:
            let peek = body.map { BodyPeek(bytes: $0, isComplete: true) } ?? inputs.peek
            let found = headBytes.withUnsafeReadableBytes {
                inputs.routes.match(
                    $0, head: head, client: inputs.client, tls: inputs.tls, body: peek, tags: state.routeTags)
            }
            guard let found else {
                return failed(404, "no route takes the request as a pre_upstream policy of '\(current.name)' re-routed it")
            }
            next = found
        }
        guard next !== current else { return nil }
        move(to: next)
        // What the first route's filters found out or asked for (fields for the upstream, for the response) is
        // theirs; who the client proved to be stays for the log.
        forgetFilterRun()
        // The new route's body limit, on what arrived already too (HTTP/2 DATA that came while the first route
        // decided) and on the body a policy held.
        let received = max(Int64(log.bytesIn), Int64(body?.count ?? 0), head.contentLength ?? 0)
        if received > next.maxBodySize {
            return failed(413, "request body larger than \(next.maxBodySize) bytes")
        }
        // The new route's readers get the body the first route held; one it did not hold is streaming.
        let bodyLimit = max(next.ownFilters.bodyLimit, next.ownPreUpstreamPolicies.compactMap(\.bodyLimit).max() ?? 0)
        if bodyLimit > 0, hasBody {
            guard let body else {
                return failed(500, "route '\(next.name)' reads the request body, which route '\(current.name)' "
                    + "did not hold (give its re-routing policy read_body)")
            }
            if body.count > bodyLimit {
                return failed(413, "request body larger than \(bodyLimit) bytes, the most its filters read")
            }
        }
        return nil
    }

    /// The route a re-resolve pass moved the request to runs as if it had been chosen first: its own filters,
    /// then (`filtersFinished`) its own pre-upstream policies. Its listener's ran on the first route already, so
    /// they do not run twice (a listener's rate limit would count the request twice, its re-routing policy ask
    /// again). Nil when one of its filters waits.
    mutating func runReroutedFilters(_ state: PolicyRequestState, body: [UInt8]?, runtime: WorkerRuntime) -> FilterVerdict? {
        guard let route, let headBytes else { return .proceed }
        if !route.ownPreUpstreamPolicies.isEmpty { state.heldBody = body }
        guard !route.ownFilters.isEmpty else { return filtersFinished(.proceed, runtime: runtime) }
        let input = FilterInput(
            head: head, bytes: headBytes, clientAddress: state.clientAddress, clientIP: state.rerouteInputs?.client ?? nil,
            route: route, tls: state.rerouteInputs?.session, now: .now(), body: body)
        guard let verdict = startFilters(route.ownFilters, input: input) else { return nil }
        return filtersFinished(verdict, runtime: runtime)
    }

    private mutating func failed(_ status: Int, _ reason: String) -> FilterVerdict {
        log.failure = reason
        return .fail(status: status, reason: reason)
    }
}
