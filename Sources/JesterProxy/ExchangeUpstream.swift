// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import NIOCore

/// The upstream side of one exchange, whatever the pool speaks: a keep-alive HTTP/1.1 connection
/// (`UpstreamConnection`) or a stream on a shared HTTP/2 connection (`HTTP2UpstreamStream`). Every client
/// adapter (an HTTP/1.1 connection, an HTTP/2 stream) talks to this one interface, so each behaviour of the
/// upstream side (retries, replays, flow control, trailers, the refusal of a response) is written once per upstream
/// protocol rather than once per pair of protocols.
///
/// The request goes as a rendered head (`UpstreamRequest`, the same for every pool), then body bytes without
/// framing and an end with optional trailers: each upstream frames them as its protocol does. The response comes
/// back through `UpstreamConnectionDelegate` as an HTTP/1.1-form head (`HTTPHead` over its bytes), decoded body
/// bytes, trailers and an end.
protocol ExchangeUpstream: AnyObject {
    var pool: UpstreamPool { get }
    var target: Int { get }
    var targetDescription: String { get }
    /// Whether more request body may be sent now (backpressure: the client is read, or its window opened, only
    /// while this holds); `UpstreamConnectionDelegate.upstreamWritabilityChanged` says when it holds again.
    var isWritable: Bool { get }
    /// Exchanges completed before this one (0 for a fresh connection): a failure after some is a stale one.
    var completedExchanges: Int { get }
    /// Whether the response head's framing (a `Content-Length: 0`, a `Transfer-Encoding: chunked`) was added
    /// for HTTP/1.1 by this upstream, an HTTP/2 one whose answer has no such field: an HTTP/2 client is not told
    /// it.
    var responseFramingIsSynthesized: Bool { get }
    /// Nanoseconds from the request going out to the response head, once that came (for the metrics); nil when
    /// not known.
    var responseWait: Int64? { get }
    /// Sends the request head. `chunkedBody`: the head declares chunked framing, so body bytes go as chunks.
    /// A 101 answer is passed on only when `expectsUpgrade`, and refused otherwise.
    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool)
    /// Sends request body bytes (without any framing); flushed by `flush`.
    func sendBody(_ bytes: ByteBuffer)
    /// The request body is complete; `trailers` (from an HTTP/2 client) go with its end where the protocol can
    /// carry them (chunked HTTP/1.1, HTTP/2).
    func endRequest(trailers: [HTTP2Field])
    /// Bytes of an upgraded (WebSocket) connection, passed as they are.
    func writeTunnel(_ bytes: ByteBuffer)
    func flush()
    /// The client can take more response bytes.
    func read()
    func startTunnel()
    /// Whether the shared cache answers rather than a target of the pool (`StoredResponseUpstream`): no target to
    /// count, retry or stick to.
    var isCacheAnswer: Bool { get }
    /// Abandons the exchange (the client left, or it was given up).
    func close()
    /// The exchange ended: the connection goes back to the pool when `reusable`.
    func release(reusable: Bool)
    /// The exchange ended without a release: `failed` counts against the target.
    func finished(failed: Bool)
}

/// An upstream that wraps an attempt's own for one exchange (the cache's, request-body decoding, Wasm policies):
/// the target, its pool and the connection's state are the wrapped one's; each wrapper writes what it changes.
protocol WrappingUpstream: ExchangeUpstream {
    var inner: any ExchangeUpstream { get }
}

extension WrappingUpstream {
    var pool: UpstreamPool { inner.pool }
    var target: Int { inner.target }
    var targetDescription: String { inner.targetDescription }
    var isWritable: Bool { inner.isWritable }
    var completedExchanges: Int { inner.completedExchanges }
    var responseWait: Int64? { inner.responseWait }
}

extension UpstreamConnection: ExchangeUpstream {
    var responseFramingIsSynthesized: Bool { false }

    /// From the pool's clock reads at the exchange's start and at the response head (the least-latency balancer
    /// reads them too), so the metrics cost no clock read of their own.
    var responseWait: Int64? { responseHeadAt.map { Int64(($0 - exchangeStartedAt) * 1e9) } }

    func release(reusable: Bool) {
        pool.release(self, reusable: reusable)
    }

    func finished(failed: Bool) {
        pool.finished(self, failed: failed)
    }
}

extension UpstreamPool {
    /// An upstream for one attempt of an exchange, in the form the pool speaks: an HTTP/1.1 connection
    /// (`acquire`), or a stream on a target's shared HTTP/2 connection (`acquireHTTP2`) wrapped as an
    /// `HTTP2UpstreamStream`. The same rules either way (`excluded` targets, `preferred` sticky target, limits,
    /// breaker); the answer goes to `waiter`. `client`: the addresses for a PROXY header (`send_proxy_protocol`,
    /// HTTP/1.1 pools only).
    func acquireUpstream(
        hashKey: UInt64?, fresh: Bool, excluding excluded: Set<Int>, connectTimeout: Duration?, preferring preferred: Int?,
        client: @autoclosure () -> ProxyProtocol.Addresses?, for waiter: any UpstreamWaiter
    ) {
        guard speaksHTTP2 else {
            acquire(hashKey: hashKey, fresh: fresh, excluding: excluded, connectTimeout: connectTimeout,
                preferring: preferred, client: settings.sendProxyProtocol == nil ? nil : client(), for: waiter)
            return
        }
        let tls = settings.tls != nil
        acquireHTTP2(hashKey: hashKey, excluding: excluded, connectTimeout: connectTimeout, preferring: preferred) {
            result in
            waiter.upstreamAcquired(result.map { HTTP2UpstreamStream(connection: $0, tls: tls) }, from: self)
        }
    }
}
