// SPDX-License-Identifier: Apache-2.0
import JesterCache
import JesterCore
import JesterHTTP2
import NIOCore

/// The background request of `stale-while-revalidate` (RFC 5861 §3): the client has its stale answer already;
/// this sends the same request, with the cache's validators, to the pool and lets a `CachingUpstream` store what
/// comes back (a 304 refreshes the entry, a new response replaces it). It has no client: it reads the answer as
/// fast as it comes and gives the connection back at its end.
///
/// One per key at a time across every worker: it runs only for the request that won the key's fetching flag.
/// It keeps itself alive until the answer ends or fails. Loop-confined.
final class BackgroundRefresh: UpstreamWaiter, UpstreamConnectionDelegate, @unchecked Sendable {
    /// The refresh's own cache step: the lookup's stored response, the flag, `fwd=stale`.
    let cache: CacheExchange
    private var requestHead: ByteBuffer?
    private var upstream: (any ExchangeUpstream)?
    /// Itself, until the answer is over (nothing else holds a request without a client).
    private var keepAlive: BackgroundRefresh?

    init(cache: CacheExchange) {
        self.cache = cache
    }

    /// Sends `requestHead` (the client's request as the adapter rendered it, with the cache's validators).
    func start(requestHead: ByteBuffer) {
        self.requestHead = requestHead
        keepAlive = self
        // Bounded like the fetch it is: an origin that accepts the request and never answers lets go of nothing
        // else, but its connection goes after lock_timeout (its flag is anyone's by then).
        let timeout = TimeAmount.nanoseconds(cache.store.coalescing.lockTimeout)
        cache.eventLoop.scheduleTask(in: timeout) { [weak self] in self?.giveUp() }
        cache.acquire(forRefresh: self)
    }

    private func giveUp() {
        guard keepAlive != nil else { return }
        upstream?.close()
        upstream = nil
        cache.releaseTicket(failed: true)
        keepAlive = nil
    }

    func upstreamAcquired(_ result: Result<any ExchangeUpstream, UpstreamFailure>, from pool: UpstreamPool) {
        guard case .success(let upstream) = result, let requestHead else {
            cache.releaseTicket(failed: true)
            keepAlive = nil
            return
        }
        self.upstream = upstream
        upstream.startExchange(
            delegate: self, requestHead: requestHead, chunkedBody: false, isHeadRequest: false, expectsUpgrade: false)
        upstream.flush()
    }

    func upstreamResponseHead(_ head: HTTPHead, bytes: ByteBuffer) {}
    func upstreamResponseBody(_ body: ByteBuffer) {}
    func upstreamResponseTrailers(_ fields: [HTTP2Field]) {}
    func upstreamTunnelData(_ bytes: ByteBuffer) {}
    func upstreamWritabilityChanged(isWritable: Bool) {}

    func upstreamReadComplete() {
        upstream?.read()
    }

    func upstreamResponseEnd(reusable: Bool) {
        upstream?.release(reusable: reusable)
        upstream = nil
        keepAlive = nil
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        upstream = nil
        keepAlive = nil
    }
}
