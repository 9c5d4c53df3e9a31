// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// The upstream phase, the same for every client protocol and every pool: asking the pool for an upstream
/// (`ExchangeUpstream`), the request head each attempt sends, and what a failed attempt leads to.
extension RequestExchange {
    /// What the next attempt asks the chosen pool for (`UpstreamAttempt.acquire`); the attempt starts here, for
    /// the log and the trace. (A value the adapter then acts on, rather than a call made from inside the
    /// exchange: the pool may answer at once, into the adapter, which then changes the exchange again.)
    mutating func nextAttempt(runtime: WorkerRuntime) -> UpstreamAttempt {
        upstreamEvent(.asked, runtime: runtime)
        return UpstreamAttempt(
            pool: pool!, hashKey: balancingHash, excluded: retries.failedTargets,
            connectTimeout: route?.timeouts.connect, preferred: stickyTarget, cache: cache,
            decoding: requestDecoding, allocator: runtime.allocator)
    }

    /// The attempt's upstream answered with a final (or 101) head (`response` over `bytes`): logged, traced, its
    /// wait kept for the metrics, and an unsafe request's target invalidated in the cache.
    mutating func upstreamAnswered(
        by upstream: (any ExchangeUpstream)?, head response: HTTPHead, bytes: ByteBuffer, runtime: WorkerRuntime
    ) {
        upstreamEvent(.responseHead, runtime: runtime)
        if pendingInvalidation != nil {
            invalidateCache(status: response.status, head: response, bytes: bytes, runtime: runtime)
        }
        if runtime.metrics != nil { upstreamResponseWait = upstream?.responseWait }
    }

    /// No upstream for this attempt: what the client is answered with. A retry that finds no other target
    /// answers with what the failed attempt got (a 502 from a reset target stays a 502, not "no target").
    mutating func acquisitionFailed(_ failure: UpstreamFailure) -> UpstreamFailure {
        var failure = failure
        if case .noTarget = failure, let previous = retries.lastFailure { failure = previous }
        log.failure = failure.reason
        return failure
    }

    /// The attempt has its upstream: it is logged and traced, and the request head it sends is rendered by
    /// `request` (the same rendering for every pool; an HTTP/2 upstream translates it to fields). Returns that
    /// head, and the upstream the adapter talks to: `upstream`, or it wrapped by the route's post-response
    /// policies.
    mutating func startAttempt(
        on upstream: any ExchangeUpstream, request: UpstreamRequest, clientAddress: String, runtime: WorkerRuntime
    ) -> (head: ByteBuffer, upstream: any ExchangeUpstream) {
        let target = upstream.targetDescription
        upstreamConnected(target: upstream.target, runtime: runtime)
        log.upstreamTarget = target
        assignRequestID(runtime: runtime)
        let head = renderedHead(request, target: target, runtime: runtime)
        var attempt = upstream
        if let body = policyState?.replacementBody { attempt = ReplacedBodyUpstream(wrapping: upstream, body: body) }
        return (head, withResponsePolicies(attempt, clientAddress: clientAddress, runtime: runtime))
    }

    /// (Non-mutating: see "Second attempts" in RequestExchange.)
    private func renderedHead(_ request: UpstreamRequest, target: String, runtime: WorkerRuntime) -> ByteBuffer {
        headBytes!.withUnsafeReadableBytes {
            request.renderHead(
                $0, head: head, target: target, requestID: requestID, trace: upstreamTraceContext,
                allocator: runtime.allocator)
        }
    }

    /// What an attempt's failure leads to.
    enum AttemptFailureAction {
        /// Part of the response went out: the client's response is cut (HTTP/1.1: the connection closes;
        /// HTTP/2: the stream is reset), so the client sees it incomplete.
        case cut
        /// The request goes again at once, on a fresh connection (a stale keep-alive connection failed it).
        case replay
        /// The request goes to another target after `delay` (the route's retry policy allowed it).
        case retry(after: TimeAmount)
        /// The client is answered with `status` (a 502 or a 504).
        case answer(status: Int)
    }

    /// Decides what follows `failure` of the attempt on `failed` (nil when the attempt had no upstream yet):
    /// `responseStarted`, whether the client has part of a response; `requestComplete`, whether the request body
    /// is all read (only then can it go again). The failure is logged.
    mutating func afterAttemptFailed(
        _ failure: UpstreamFailure, on failed: (any ExchangeUpstream)?, responseStarted: Bool, requestComplete: Bool,
        runtime: WorkerRuntime
    ) -> AttemptFailureAction {
        log.failure = failure.reason
        if responseStarted { return .cut }
        guard let failed, !failed.isCacheAnswer else { return .answer(status: failure.status) }
        if replayAllowed(after: failure, completedExchanges: failed.completedExchanges, runtime: runtime) {
            return .replay
        }
        if failure.isReset, let delay = retryDelay(
            after: .reset, target: failed.target, pool: failed.pool, requestComplete: requestComplete, runtime: runtime)
        {
            retries.lastFailure = failure
            return .retry(after: delay)
        }
        return .answer(status: failure.status)
    }

    /// Whether the upstream's answer `status` is thrown away and the request sent to another target instead
    /// (the route's `retry_on`), with the delay before it goes; nil to forward the answer. Only before any of the
    /// response went to the client.
    mutating func retryDelay(
        afterStatus status: Int, on upstream: any ExchangeUpstream, requestComplete: Bool, runtime: WorkerRuntime
    ) -> TimeAmount? {
        guard status >= 500, !upstream.isCacheAnswer, let route, route.retryPolicy.statuses.contains(status)
        else { return nil }
        // A post-response policy's own answer (or its error status) is not the target's: never retried.
        if let policies = upstream as? PolicyResponseUpstream, policies.answeredItself { return nil }
        return retryDelay(
            after: .status(status), target: upstream.target, pool: upstream.pool, requestComplete: requestComplete,
            runtime: runtime)
    }
}

/// One attempt's request to its pool: a connection or an HTTP/2 stream, never on a target the request already
/// failed on, its sticky target first.
struct UpstreamAttempt {
    let pool: UpstreamPool
    let hashKey: UInt64?
    let excluded: Set<Int>
    let connectTimeout: Duration?
    let preferred: Int?
    /// The request's cache step, on a route that caches: asked first.
    let cache: CacheExchange?
    /// Whether the body goes upstream decoded (never with a cache step: requests with a body bypass the cache).
    let decoding: RequestDecompression
    let allocator: ByteBufferAllocator

    /// Asks the pool; the answer goes to `waiter` (`UpstreamWaiter.upstreamAcquired`), possibly before this
    /// returns. `fresh`: not a reused connection (a replay). `client`: the addresses a PROXY header carries
    /// (evaluated only for pools that send one).
    func acquire(
        fresh: Bool, client: @autoclosure () -> ProxyProtocol.Addresses?, for waiter: any UpstreamWaiter
    ) {
        if let cache {
            cache.acquire(
                self, fresh: fresh, client: pool.settings.sendProxyProtocol == nil ? nil : client(), for: waiter)
            return
        }
        switch decoding {
        case .forward:
            acquireFromPool(fresh: fresh, client: client(), for: waiter)
        case .decode(let coding, let limit):
            acquireFromPool(
                fresh: fresh, client: client(),
                for: DecodingWaiter(waiter: waiter, coding: coding, limit: limit, allocator: allocator))
        case .unsupported:
            waiter.upstreamAcquired(
                .failure(.requestBodyRefused(
                    status: 415, reason: "request body coding not supported (Jester decodes "
                        + RequestDecompression.acceptedCodings + ")")),
                from: pool)
        }
    }

    /// The same attempt without its cache step (what the cache step keeps of it: no cycle).
    var withoutCache: UpstreamAttempt {
        UpstreamAttempt(
            pool: pool, hashKey: hashKey, excluded: excluded, connectTimeout: connectTimeout, preferred: preferred,
            cache: nil, decoding: decoding, allocator: allocator)
    }

    /// Asks the pool itself (the cache's forwarded requests, and every request on a route without a cache).
    func acquireFromPool(
        fresh: Bool, client: @autoclosure () -> ProxyProtocol.Addresses?, for waiter: any UpstreamWaiter
    ) {
        pool.acquireUpstream(
            hashKey: hashKey, fresh: fresh, excluding: excluded, connectTimeout: connectTimeout,
            preferring: preferred, client: client(), for: waiter)
    }
}

extension UpstreamFailure {
    /// The upstream went away before answering (a connection closed, a stream reset or refused): a retry policy's
    /// `reset` case.
    var isReset: Bool {
        switch self {
        case .closedEarly, .streamReset: return true
        default: return false
        }
    }
}
