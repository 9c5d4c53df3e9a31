// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterCache
import JesterCacheStore
import JesterCore
import JesterSystem
import NIOCore

/// One request's passage through the shared HTTP cache (Docs/cache-design.md, "What the I/O layer does per
/// request"): the lookup and what it decided, the key's fetching flag, and the fields the request sends upstream.
///
/// It sits where the exchange asks its pool for an upstream (`UpstreamAttempt.acquire`), so every client protocol
/// goes through it unchanged: a hit is answered by a `StoredResponseUpstream`, a forwarded request by the pool's
/// upstream wrapped in a `CachingUpstream`, which stores, refreshes or replaces the entry as the answer comes.
/// A request for a key another request (on any worker) is fetching waits, polling the slot, until that fetch is
/// published or `lock_timeout` passes: an event loop cannot sleep on the slot's futex.
///
/// Loop-confined.
final class CacheExchange: UpstreamWaiter, @unchecked Sendable {
    /// Where the request is.
    enum Phase {
        /// Not looked up yet.
        case fresh
        /// Waiting for another request's fetch of the same key.
        case waiting
        /// Sent (or being sent) upstream.
        case forwarding
        /// Answered from the cache.
        case answered
    }

    let store: CacheStore
    let policy: CachePolicy
    /// The request as the cache sees it (unkeyed fields stripped).
    let request: CacheRequest
    let plan: CacheRequestPlan
    let eventLoop: any EventLoop
    let allocator: ByteBufferAllocator
    fileprivate(set) var phase = Phase.fresh
    /// What the lookup found (the stored response kept for a revalidation's 304 and for stale-if-error).
    fileprivate(set) var found: CacheStore.Found?
    /// Why the request went upstream (`Cache-Status: fwd=`).
    fileprivate(set) var forward = ForwardReason.miss
    /// The key's fetching flag, while this request holds it; handed to the writer that stores the answer.
    var ticket: CacheIndex.Ticket?
    /// The request waited for another's fetch (`Cache-Status: collapsed` if that fetch then serves it).
    private(set) var collapsed = false
    /// Fields the upstream request drops (empty value) or gets: stripped unkeyed fields, the client's validators,
    /// the cache's own conditional.
    private(set) var upstreamFields: [LocalResponse.Field] = []

    /// This worker's memo of recently served entries.
    let memo: CacheEntryMemo?
    private var waitingSince: Int64?
    private var changedClaims = 0
    /// The adapter waiting for its upstream (weak: an adapter that went away is simply not answered).
    private weak var waiter: (any UpstreamWaiter)?
    fileprivate var attempt: UpstreamAttempt?
    private var proxyClient: ProxyProtocol.Addresses?

    init(
        store: CacheStore, policy: CachePolicy, request: CacheRequest, plan: CacheRequestPlan,
        eventLoop: any EventLoop, allocator: ByteBufferAllocator, memo: CacheEntryMemo? = nil
    ) {
        self.memo = memo
        self.store = store
        self.policy = policy
        self.request = request
        self.plan = plan
        self.eventLoop = eventLoop
        self.allocator = allocator
        upstreamFields = plan.stripFields.map { LocalResponse.Field($0, "") }
    }

    deinit {
        // A request that ended without storing (the client left, every attempt failed) gives its key back.
        if let ticket { store.index.release(ticket) }
    }

    /// Wall-clock seconds: `Date`, `Expires` and `Age` are wall-clock values.
    static func wallNow() -> Int64 { Int64(time(nil)) }

    var isHead: Bool { request.method == "HEAD" }

    // MARK: Acquiring

    /// The attempt's upstream for `waiter`: from the cache, or the pool's wrapped, after waiting if another
    /// request fetches the key. A second attempt (a retry) goes to the pool at once.
    func acquire(
        _ attempt: UpstreamAttempt, fresh: Bool, client: ProxyProtocol.Addresses?, for waiter: any UpstreamWaiter
    ) {
        self.waiter = waiter
        // Kept without its cache step: the attempt holds this exchange, which must not hold itself.
        self.attempt = attempt.withoutCache
        proxyClient = client
        switch phase {
        case .fresh, .waiting, .answered: decide()
        case .forwarding: forwardUpstream(fresh: fresh)
        }
    }

    /// Looks up and carries out `CacheLookup`'s decision.
    private func decide() {
        let now = Self.wallNow()
        let found = store.find(request: request, plan: plan, opener: memo.map { memo in { memo.open($0, $1) } })
        self.found = found
        upstreamFields = plan.stripFields.map { LocalResponse.Field($0, "") }
        switch CacheLookup.decide(
            request: request, plan: plan, stored: found.stored, primaryFound: found.primaryFound, now: now,
            policy: policy)
        {
        case .serve(let served):
            serve(served, now: now)
        case .serveAndRevalidate(let served, let conditional):
            serve(served, now: now, refresh: backgroundRefresh(conditional))
        case .revalidate(let conditional, let reason):
            forward = reason
            upstreamFields += conditional.remove.map { LocalResponse.Field($0, "") }
            upstreamFields += conditional.add.fields.map { LocalResponse.Field($0.name, $0.value) }
            coalesce()
        case .fetch(let reason):
            forward = reason
            upstreamFields += ConditionalRequest.clientValidators.map { LocalResponse.Field($0, "") }
            coalesce()
        case .gatewayTimeout(let status):
            answer(
                status: 504,
                fields: [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Status", status.fieldValue)],
                body: nil)
        }
    }

    /// Takes the key's fetching flag, waits for its holder, or goes upstream alone (`FetchCoalescing`).
    private func coalesce() {
        guard let found else { return }
        // What cannot be stored must not make others wait: a HEAD (never stored), a client's no-store.
        guard !isHead, plan.mayStore else { return forwardUpstream(fresh: false) }
        let monotonicNow = CacheIndex.monotonicNanoseconds()
        switch store.coalescing.decide(
            flag: Self.fetchFlag(found.observation?.flag ?? .idle), now: monotonicNow, waitingSince: waitingSince)
        {
        case .claim(let deadline):
            let (claim, dropped) = store.index.claim(
                found.flagKey, observed: found.observation, owner: store.owner, deadline: deadline,
                now: Self.wallNow(), monotonicNow: monotonicNow)
            if let dropped { store.discard([dropped]) }
            switch claim {
            case .claimed(let ticket):
                self.ticket = ticket
                forwardUpstream(fresh: false)
            case .changed:
                // Another process changed the slot between the lookup and the claim: look again (a few times).
                changedClaims += 1
                if changedClaims < 4 { decide() } else { forwardUpstream(fresh: false) }
            case .bucketFull:
                forwardUpstream(fresh: false)
            }
        case .wait(let until):
            guard let observed = found.observation else { return forwardUpstream(fresh: false) }
            if waitingSince == nil { waitingSince = monotonicNow }
            phase = .waiting
            collapsed = true
            poll(observed, until: until, delay: .milliseconds(2))
        case .forwardAlone:
            forwardUpstream(fresh: false)
        }
    }

    /// Checks the slot until it changes (the fetch ended) or `until` passes, backing off from 2 ms to 50 ms; then
    /// decides again.
    private func poll(_ observed: CacheIndex.Observation, until: Int64, delay: TimeAmount) {
        eventLoop.scheduleTask(in: delay) { [self] in
            guard phase == .waiting, waiter != nil else { return }
            if store.index.lookup(observed.key) != observed || CacheIndex.monotonicNanoseconds() >= until {
                decide()
            } else {
                poll(observed, until: until, delay: min(delay * 2, .milliseconds(50)))
            }
        }
    }

    /// Asks the pool; its upstream comes back wrapped (`upstreamAcquired`).
    private func forwardUpstream(fresh: Bool) {
        if phase != .forwarding { store.index.increment(.misses) }
        phase = .forwarding
        attempt?.acquireFromPool(fresh: fresh, client: proxyClient, for: self)
    }

    func upstreamAcquired(_ result: Result<any ExchangeUpstream, UpstreamFailure>, from pool: UpstreamPool) {
        guard let waiter else {
            if case .success(let upstream) = result { upstream.release(reusable: true) }
            return
        }
        switch result {
        case .success(let upstream):
            waiter.upstreamAcquired(.success(CachingUpstream(wrapping: upstream, cache: self)), from: pool)
        case .failure(let failure):
            // No upstream at all: stale-if-error may still answer.
            if let answer = staleAnswer(afterFailureAt: Self.wallNow()) {
                waiter.upstreamAcquired(.success(answer), from: pool)
            } else {
                waiter.upstreamAcquired(.failure(failure), from: pool)
            }
        }
    }

    // MARK: Answers from the cache

    /// A refresh of the stale entry this request is served (stale-while-revalidate), if it wins the key's flag
    /// (else another request, on some worker, refreshes it already). The request the adapter renders for the
    /// stored answer then carries the cache's validators, and goes upstream in the background.
    private func backgroundRefresh(_ conditional: ConditionalRequest) -> BackgroundRefresh? {
        guard let found, let observation = found.observation, !isHead else { return nil }
        let monotonicNow = CacheIndex.monotonicNanoseconds()
        guard case .claim(let deadline) = store.coalescing.decide(
            flag: Self.fetchFlag(observation.flag), now: monotonicNow)
        else { return nil }
        let (claim, dropped) = store.index.claim(
            found.flagKey, observed: observation, owner: store.owner, deadline: deadline, now: Self.wallNow(),
            monotonicNow: monotonicNow)
        if let dropped { store.discard([dropped]) }
        guard case .claimed(let ticket) = claim else { return nil }
        let refresh = CacheExchange(
            store: store, policy: policy, request: request, plan: plan, eventLoop: eventLoop, allocator: allocator,
            memo: memo)
        refresh.found = found
        refresh.forward = .stale
        refresh.ticket = ticket
        refresh.phase = .forwarding
        refresh.attempt = attempt
        upstreamFields += conditional.remove.map { LocalResponse.Field($0, "") }
        upstreamFields += conditional.add.fields.map { LocalResponse.Field($0.name, $0.value) }
        return BackgroundRefresh(cache: refresh)
    }

    /// A background refresh's upstream: from the pool, wrapped so its answer is stored.
    func acquire(forRefresh refresh: BackgroundRefresh) {
        waiter = refresh
        attempt?.acquireFromPool(fresh: false, client: proxyClient, for: self)
    }

    /// Serves the stored response the lookup found.
    private func serve(_ served: ServedResponse, now: Int64, refresh: BackgroundRefresh? = nil) {
        guard let found, found.stored != nil else { return forwardUpstream(fresh: false) }
        if let observation = found.observation { store.index.touch(observation, now: now) }
        store.index.increment(.hits)
        if collapsed { store.index.increment(.collapsed) }
        var served = served
        served.status.collapsed = collapsed
        guard let waiter, let pool = attempt?.pool,
            let upstream = storedUpstream(served, now: now, asStored: true, refresh: refresh)
        else { return forwardUpstream(fresh: false) }
        waiter.upstreamAcquired(.success(upstream), from: pool)
    }

    /// Answers the waiter with a response made here.
    private func answer(
        status: Int, fields: [(name: String, value: String)], contentLength: Int64? = 0, body: StoredBodyReader?
    ) {
        guard let waiter, let pool = attempt?.pool else { return }
        phase = .answered
        guard
            let response = CachedResponse(
                status: status, fields: fields, contentLength: contentLength, body: body, allocator: allocator)
        else { return forwardUpstream(fresh: false) }
        waiter.upstreamAcquired(
            .success(StoredResponseUpstream(pool: pool, eventLoop: eventLoop, response: response)), from: pool)
    }

    /// The stored response standing in for an upstream that failed before answering (RFC 5861 §4); nil when none
    /// may. The flag goes back either way.
    func staleAnswer(afterFailureAt now: Int64) -> StoredResponseUpstream? {
        let decision = CacheRevalidation.decide(
            request: request, plan: plan, stored: found?.stored, forward: forward, outcome: .failed, now: now,
            policy: policy)
        releaseTicket(failed: true)
        guard case .serveStored(let served, _) = decision else { return nil }
        return storedUpstream(served, now: now)
    }

    /// A `StoredResponseUpstream` for `served` over the stored body the lookup found. `asStored`: its fields are
    /// the stored ones with `Age` (a hit, not a 304's merge), so the memo's rendered head serves and only `Age`,
    /// `Cache-Status` and the length are written.
    func storedUpstream(
        _ served: ServedResponse, now: Int64, asStored: Bool = false, refresh: BackgroundRefresh? = nil
    ) -> StoredResponseUpstream? {
        guard let found, let stored = found.stored, let body = found.body, let pool = attempt?.pool else { return nil }
        let code = served.notModified ? 304 : stored.status
        let hasBody = !served.notModified && !isHead && code != 204
        let length = served.notModified || code == 204 ? nil : body.bodySize
        let memoized = asStored && !served.notModified
            ? found.entry.flatMap { memo?.entry(found.flagKey, generation: $0.bodyGeneration) } : nil
        let fast = memoized.flatMap { memoized in
            CachedResponse(
                prefix: memoized.headPrefix,
                extra: [("Age", stored.freshness.ageFieldValue(at: now)), ("Cache-Status", served.status.fieldValue)],
                contentLength: length,
                body: hasBody ? StoredBodyReader(file: body, memory: memoized.bodyBytes) : nil, allocator: allocator)
        }
        guard
            let response = fast
                ?? CachedResponse(
                    status: code,
                    fields: served.fields.fields.map { (name: $0.name, value: $0.value) }
                        + [(name: "Cache-Status", value: served.status.fieldValue)],
                    contentLength: length, body: hasBody ? StoredBodyReader(file: body) : nil, allocator: allocator)
        else { return nil }
        phase = .answered
        return StoredResponseUpstream(pool: pool, eventLoop: eventLoop, response: response, refresh: refresh)
    }

    /// Gives the key's flag back: idle after a failure (the next request may try at once), else `uncacheable` for
    /// a while (the answer may not be shared: others go upstream in parallel rather than queue).
    func releaseTicket(failed: Bool) {
        guard let ticket else { return }
        self.ticket = nil
        let hold: Int64? = failed ? nil : CacheIndex.monotonicNanoseconds() + store.coalescing.uncacheableHold
        store.index.release(ticket, uncacheableUntil: hold)
    }

    /// JesterCache's form of a slot's flag.
    static func fetchFlag(_ flag: CacheIndexFlag) -> FetchFlag {
        switch flag {
        case .idle: .idle
        case .fetching(let owner, let deadline): .fetching(owner: owner, deadline: deadline)
        case .uncacheable(let until): .uncacheable(until: until)
        }
    }
}
