// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import NIOCore

/// An attempt's upstream for a request whose body a pre-upstream policy replaced (`set-body`): the client's body
/// bytes are read as usual (so the connection stays in step with the client) and dropped, and the replacement goes
/// at the end, chunked (the exchange marks such a request's body as transformed, so its head says so). The
/// response side passes through. Loop-confined.
final class ReplacedBodyUpstream: WrappingUpstream, @unchecked Sendable {
    let inner: any ExchangeUpstream
    private let body: [UInt8]

    init(wrapping inner: any ExchangeUpstream, body: [UInt8]) {
        self.inner = inner
        self.body = body
    }

    var responseFramingIsSynthesized: Bool { inner.responseFramingIsSynthesized }
    var isCacheAnswer: Bool { inner.isCacheAnswer }

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        inner.startExchange(
            delegate: delegate, requestHead: requestHead, chunkedBody: chunkedBody, isHeadRequest: isHeadRequest,
            expectsUpgrade: expectsUpgrade)
    }

    /// The client's bytes: not the body that goes upstream.
    func sendBody(_ bytes: ByteBuffer) {}

    func endRequest(trailers: [HTTP2Field]) {
        if !body.isEmpty { inner.sendBody(ByteBuffer(bytes: body)) }
        inner.endRequest(trailers: trailers)
    }

    func writeTunnel(_ bytes: ByteBuffer) { inner.writeTunnel(bytes) }
    func flush() { inner.flush() }
    func read() { inner.read() }
    func startTunnel() { inner.startTunnel() }
    func close() { inner.close() }
    func release(reusable: Bool) { inner.release(reusable: reusable) }
    func finished(failed: Bool) { inner.finished(failed: failed) }
}
