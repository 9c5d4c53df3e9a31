// SPDX-License-Identifier: Apache-2.0
import JesterCache
import JesterCacheStore
import JesterCore
import JesterHTTP2
import JesterSystem
import NIOCore

/// A pool's upstream for a request the cache sent on: passes everything through, and in between carries out
/// `CacheRevalidation`'s decision on the answer: forwards it with `Cache-Status` while teeing its body into the
/// cache (`CacheBodyWriter`), answers from the stored body after a 304 or an error within `stale-if-error`, or
/// removes an entry the origin replaced.
///
/// The adapter sees one upstream either way; the wrapped one is released as its own response ends. Loop-confined.
final class CachingUpstream: WrappingUpstream, UpstreamConnectionDelegate, @unchecked Sendable {
    let inner: any ExchangeUpstream
    let cache: CacheExchange
    private weak var delegate: (any UpstreamConnectionDelegate)?
    /// When the request went out (request_time, RFC 9111 §4.2.3).
    private var requestTime: Int64 = 0
    /// Storing the forwarded body.
    private var writer: CacheBodyWriter?
    private var declaredLength: Int64?
    /// The body the upstream sends is not the client's (a 304 answered from the stored body, or turned into the
    /// client's own 304): dropped.
    private var swallowsBody = false
    /// Answering from the stored body instead of the upstream's.
    private var storedBody: StoredBodyReader?
    private var innerEnded = false
    private var innerReusable = false
    private var ended = false
    private var deliveryScheduled = false
    /// The exchange was started on the wrapped upstream (an adapter that left before may hand it back unused).
    private var started = false
    /// The wrapped upstream was closed here (a 5xx answered from the stored body).
    private var innerClosed = false

    init(wrapping inner: any ExchangeUpstream, cache: CacheExchange) {
        self.inner = inner
        self.cache = cache
    }

    var responseFramingIsSynthesized: Bool { inner.responseFramingIsSynthesized && storedBody == nil }
    var isCacheAnswer: Bool { false }

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        self.delegate = delegate
        started = true
        requestTime = CacheExchange.wallNow()
        inner.startExchange(
            delegate: self, requestHead: requestHead, chunkedBody: chunkedBody, isHeadRequest: isHeadRequest,
            expectsUpgrade: expectsUpgrade)
    }

    func sendBody(_ bytes: ByteBuffer) { inner.sendBody(bytes) }
    func endRequest(trailers: [HTTP2Field]) { inner.endRequest(trailers: trailers) }
    func writeTunnel(_ bytes: ByteBuffer) { inner.writeTunnel(bytes) }
    func flush() { inner.flush() }
    func startTunnel() { inner.startTunnel() }

    func read() {
        guard storedBody != nil else { return inner.read() }
        scheduleStoredDelivery()
        if !innerEnded { inner.read() }
    }

    func close() {
        if finishesForTheCache() { return }
        writer?.abandon()
        ended = true
        if !innerClosed { inner.close() }
    }

    func release(reusable: Bool) {
        if finishesForTheCache() { return }
        writer?.abandon()
        guard !innerClosed else { return }
        inner.release(reusable: started ? reusable && innerEnded && innerReusable : reusable)
    }

    func finished(failed: Bool) {
        if finishesForTheCache() { return }
        writer?.abandon()
        guard !innerClosed else { return }
        inner.finished(failed: failed)
    }

    // MARK: Finishing a store without the client

    /// Itself, while it reads the rest of a body for the cache after the client was done (see below).
    private var keepAlive: CachingUpstream?

    /// The client had all it gets (a 304 to its own validator) while the body the cache stores still comes: the
    /// rest is read and stored here, bounded by lock_timeout, and the connection given back at its end, rather
    /// than the store abandoned (which would leave the key to be fetched again by the next request).
    private func finishesForTheCache() -> Bool {
        guard keepAlive == nil, writer != nil, swallowsBody, storedBody == nil, !innerEnded, !innerClosed else {
            return keepAlive != nil
        }
        keepAlive = self
        delegate = nil
        let timeout = TimeAmount.nanoseconds(cache.store.coalescing.lockTimeout)
        cache.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, keepAlive != nil else { return }
            writer?.abandon()
            writer = nil
            innerClosed = true
            inner.close()
            keepAlive = nil
        }
        inner.read()
        return true
    }

    // MARK: The upstream's answer

    func upstreamResponseHead(_ head: HTTPHead, bytes: ByteBuffer) {
        guard head.status >= 200 else { return delegate?.upstreamResponseHead(head, bytes: bytes) ?? () }
        let now = CacheExchange.wallNow()
        let fields = bytes.withUnsafeReadableBytes { CacheFields(head: head, bytes: $0) }
        declaredLength = head.contentLength
        let decision = CacheRevalidation.decide(
            request: cache.request, plan: cache.plan, stored: cache.found?.stored, forward: cache.forward,
            outcome: .response(
                status: head.status, fields: fields, requestTime: requestTime, responseTime: now,
                contentLength: head.contentLength),
            now: now, policy: cache.policy)
        switch decision {
        case .forward(let notModified, var status, let entry):
            if !apply(entry, failed: head.status >= 500), status.stored {
                // Storable, but not stored (another request holds the key, or the file could not be made).
                status.stored = false
            }
            if notModified {
                // The client's own validator matched the fresh answer: a 304 with its fields, no body.
                swallowsBody = true
                let served = fields.fields.map { (name: $0.name, value: $0.value) }
                    + [(name: "Cache-Status", value: status.fieldValue)]
                guard let response = CachedResponse(
                    status: 304, fields: served, contentLength: nil, body: nil, allocator: cache.allocator)
                else { return delegate?.upstreamResponseHead(head, bytes: bytes) ?? () }
                delegate?.upstreamResponseHead(response.head, bytes: response.headBytes)
            } else {
                let (statusHead, statusBytes) = Self.adding(
                    "Cache-Status", status.fieldValue, to: bytes, head: head, allocator: cache.allocator)
                delegate?.upstreamResponseHead(statusHead ?? head, bytes: statusHead == nil ? bytes : statusBytes)
            }
        case .serveStored(let served, let entry):
            refresh(entry, now: now)
            guard let stored = cache.storedUpstream(served, now: now) else {
                return delegate?.upstreamResponseHead(head, bytes: bytes) ?? ()
            }
            swallowsBody = true
            let response = stored.response
            storedBody = response.body ?? StoredBodyReader.empty
            if head.status != 304 {
                // A 5xx answered by stale-if-error: its own body is not wanted, and reading it would wait on
                // reads nobody asks for. The connection goes (not reusable mid-response).
                innerEnded = true
                innerReusable = false
                innerClosed = true
                inner.close()
            }
            delegate?.upstreamResponseHead(response.head, bytes: response.headBytes)
            // (Not on the upstream's read cycle: a pool connection stops telling its delegate once its answer ends.)
            scheduleStoredDelivery()
        case .refetch, .fail:
            // A 304 about another response than the stored one: the entry goes, the answer passes as it is (a
            // second request without validators is not made here).
            if let stored = cache.found?.stored {
                cache.store.remove(stored.indexHash(seed: cache.store.index.hashSeed))
            }
            cache.releaseTicket(failed: true)
            delegate?.upstreamResponseHead(head, bytes: bytes)
        }
    }

    /// Carries out what becomes of the entry when the upstream's answer is forwarded; false when a response to
    /// store is not being stored.
    private func apply(_ entry: EntryUpdate, failed: Bool) -> Bool {
        switch entry {
        case .store(let stored):
            guard let ticket = cache.ticket, !cache.isHead else {
                cache.releaseTicket(failed: false)
                return false
            }
            cache.ticket = nil
            writer = cache.store.writer(for: stored, ticket: ticket, maxBodySize: cache.policy.maxObjectSize)
            return writer != nil
        case .remove:
            if let old = cache.found?.stored { cache.store.remove(old.indexHash(seed: cache.store.index.hashSeed)) }
            cache.releaseTicket(failed: false)
        case .keep:
            cache.releaseTicket(failed: failed)
        }
        return true
    }

    /// After a 304 (or stale-if-error): new metadata over the kept body is a new file (the body copied), published
    /// under the flag; or the entry goes.
    private func refresh(_ entry: EntryUpdate, now: Int64) {
        switch entry {
        case .store(let refreshed):
            guard let ticket = cache.ticket, let body = cache.found?.body,
                let copy = cache.store.writer(for: refreshed, ticket: ticket, maxBodySize: nil)
            else { return cache.releaseTicket(failed: false) }
            cache.ticket = nil
            let reader = StoredBodyReader(file: body)
            while case .piece(let piece) = reader.nextPiece(allocator: cache.allocator) {
                guard piece.withUnsafeReadableBytes({ copy.append($0) }) else { return }
            }
            copy.finish(declaredLength: body.bodySize, now: now)
        case .remove:
            if let old = cache.found?.stored { cache.store.remove(old.indexHash(seed: cache.store.index.hashSeed)) }
            cache.releaseTicket(failed: false)
        case .keep:
            cache.releaseTicket(failed: true)
        }
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        // Stored even when the client gets a 304 instead (its own validator matched the fresh answer).
        if let writer { _ = body.withUnsafeReadableBytes { writer.append($0) } }
        guard !swallowsBody else { return }
        delegate?.upstreamResponseBody(body)
    }

    func upstreamResponseTrailers(_ fields: [HTTP2Field]) {
        // A response with trailers is passed on; its stored copy would lack them, so it is not kept.
        writer?.abandon(uncacheable: true)
        writer = nil
        guard storedBody == nil else { return }
        delegate?.upstreamResponseTrailers(fields)
    }

    func upstreamResponseEnd(reusable: Bool) {
        innerEnded = true
        innerReusable = reusable
        if let writer {
            writer.finish(declaredLength: declaredLength, now: CacheExchange.wallNow())
            self.writer = nil
        }
        if keepAlive != nil {
            // Stored without the client: the connection goes back.
            inner.release(reusable: reusable)
            keepAlive = nil
            return
        }
        if let storedBody {
            // The stored body goes on; its end is this exchange's end.
            if storedBody.isFinished, !ended { endStored() } else { scheduleStoredDelivery() }
            return
        }
        delegate?.upstreamResponseEnd(reusable: reusable)
    }

    func upstreamTunnelData(_ bytes: ByteBuffer) { delegate?.upstreamTunnelData(bytes) }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        writer?.abandon()
        writer = nil
        if keepAlive != nil {
            keepAlive = nil
            return
        }
        if storedBody != nil {
            // The stored answer does not need the upstream any more.
            innerEnded = true
            innerReusable = false
            if storedBody!.isFinished, !ended { endStored() }
            return
        }
        // A reset (a keep-alive connection the target closed, a refused stream) is the adapter's to replay or
        // retry: the flag stays with the request for its next attempt (or its end), and stale-if-error waits.
        // Timeouts and broken answers are final: stale-if-error may answer them.
        if !responseStarted, !failure.isReset,
            let stale = cache.staleAnswer(afterFailureAt: CacheExchange.wallNow())
        {
            // stale-if-error: the stored response answers instead (RFC 5861 §4).
            swallowsBody = true
            storedBody = stale.response.body ?? StoredBodyReader.empty
            innerEnded = true
            delegate?.upstreamResponseHead(stale.response.head, bytes: stale.response.headBytes)
            scheduleStoredDelivery()
            return
        }
        if !failure.isReset || responseStarted { cache.releaseTicket(failed: true) }
        delegate?.upstreamFailed(failure, responseStarted: responseStarted)
    }

    func upstreamReadComplete() {
        // Storing without the client: read on.
        if keepAlive != nil { return inner.read() }
        // In place of the upstream's reads, the stored body's pieces go on a later turn, one per read.
        guard storedBody == nil else { return scheduleStoredDelivery() }
        delegate?.upstreamReadComplete()
    }

    func upstreamWritabilityChanged(isWritable: Bool) { delegate?.upstreamWritabilityChanged(isWritable: isWritable) }

    // MARK: Answering from the stored body

    /// One piece on a later turn of the loop (never inside the adapter's own call: a 1 GiB body would recurse).
    private func scheduleStoredDelivery() {
        guard !deliveryScheduled, !ended else { return }
        deliveryScheduled = true
        cache.eventLoop.execute { [self] in
            deliveryScheduled = false
            deliverStoredPiece()
        }
    }

    private func deliverStoredPiece() {
        guard let storedBody, !ended, let delegate else { return }
        switch storedBody.nextPiece(allocator: cache.allocator) {
        case .piece(let piece):
            delegate.upstreamResponseBody(piece)
            delegate.upstreamReadComplete()
        case .failed:
            ended = true
            delegate.upstreamFailed(.closedEarly, responseStarted: true)
        case .end:
            if innerEnded { endStored() }
        }
    }

    private func endStored() {
        ended = true
        delegate?.upstreamResponseEnd(reusable: innerReusable)
        delegate?.upstreamReadComplete()
    }

    /// The head in `bytes` with one more field: re-rendered and parsed again (a cacheable route's responses only).
    static func adding(
        _ name: String, _ value: String, to bytes: ByteBuffer, head: HTTPHead, allocator: ByteBufferAllocator
    ) -> (HTTPHead?, ByteBuffer) {
        var out = allocator.buffer(capacity: bytes.readableBytes + name.utf8.count + value.utf8.count + 4)
        var original = bytes
        guard let withoutEnd = original.readSlice(length: max(0, bytes.readableBytes - 2)) else { return (nil, bytes) }
        out.writeImmutableBuffer(withoutEnd)
        out.writeString("\(name): \(value)\r\n\r\n")
        var parsed = HTTPHead()
        let parser = HTTPHeadParser(limits: .init(maxHeadSize: 1 << 20, maxURILength: 1 << 16, maxFieldCount: 1000))
        guard out.withUnsafeReadableBytes({ parser.parseResponse($0, into: &parsed) }) == nil else {
            return (nil, bytes)
        }
        return (parsed, out)
    }
}
