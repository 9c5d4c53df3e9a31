// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import JesterMetrics
import JesterTLS
import NIOCore

/// The multiplexed protocol a client connection speaks: each of its requests is a `RequestStream`.
enum StreamProtocol {
    case http2
    case http3

    /// The access log's `protocol`.
    var logName: StaticString {
        switch self {
        case .http2: "HTTP/2.0"
        case .http3: "HTTP/3"
        }
    }

    /// The metrics' `protocol` label.
    var metric: MetricProtocol {
        switch self {
        case .http2: .http2
        case .http3: .http3
        }
    }

    /// The code of a stream the client cancelled (HTTP/2 CANCEL, HTTP/3 H3_REQUEST_CANCELLED).
    var cancelCode: UInt64 {
        switch self {
        case .http2: 0x8
        case .http3: 0x10C
        }
    }

    /// The trace's `network.protocol.version`.
    var version: String {
        switch self {
        case .http2: "2"
        case .http3: "3"
        }
    }

    /// Whether a stream reset with `errorCode` is the client cancelling its request (HTTP/2 CANCEL, HTTP/3
    /// H3_REQUEST_CANCELLED), rather than an error.
    func isCancellation(_ errorCode: UInt64) -> Bool {
        errorCode == cancelCode
    }
}

/// What a request stream needs of the client connection it belongs to: an HTTP/2 connection over nghttp2
/// (`HTTP2Connection`) or an HTTP/3 one over ngtcp2 and nghttp3 (`HTTP3Connection`). One `RequestStream` adapter
/// serves both, so a request over HTTP/3 is routed, filtered, proxied, retried and logged by the very code that
/// serves HTTP/2 (and, through `RequestExchange`, HTTP/1.1). Fields go out as HTTP/2's types (an HTTP/3
/// connection converts them at its session); stream ids are 62-bit, as HTTP/3's are.
protocol RequestStreamConnection: AnyObject {
    var runtime: WorkerRuntime { get }
    var routes: ListenerRoutes { get }
    /// The listener's metric ids (nil without metrics).
    var metricsListener: ListenerMetricIDs? { get }
    var tls: TLSSessionFacts? { get }
    var clientSubjectHeader: [UInt8]? { get }
    var clientAddress: String { get }
    var clientIP: IPAddressBytes? { get }
    /// The client and what it connected to, for PROXY headers to targets (`send_proxy_protocol`).
    var proxyAddresses: ProxyProtocol.Addresses? { get }
    var streamProtocol: StreamProtocol { get }
    /// The client's TLS handshake is complete (always, but for an HTTP/3 connection still in its 0-RTT phase):
    /// a request read before that may be a replay (`RequestExchange.earlyDataVerdict`).
    var handshakeComplete: Bool { get }

    /// Calls `resume` once the handshake completes (never, if the connection or the stream ends first).
    func awaitHandshake(stream id: Int64, _ resume: @escaping () -> Void)

    /// One request's worth of `http.connection_request_rate`.
    func takeRequestToken() -> Bool
    /// Sends what the streams handed over at the end of this event-loop tick.
    func scheduleFlush()
    func respond(_ id: Int64, fields: [HTTP2Field], hasBody: Bool)
    func respond(_ id: Int64, headers: HTTP2HeaderBlock, hasBody: Bool)
    func respondInterim(_ id: Int64, status: Int)
    func sendBody(_ id: Int64, _ bytes: ByteBuffer)
    func finishBody(_ id: Int64, trailers: [HTTP2Field])
    /// Response body bytes handed over and not yet sent (the stream pauses its upstream above a limit).
    func bufferedBody(_ id: Int64) -> Int
    /// Request body bytes passed on: the client may send as many more (flow control as backpressure).
    func consumed(_ id: Int64, count: Int)
    /// A response under way will not be completed: what was handed over goes out, then the stream is reset.
    func abortResponse(_ id: Int64)
    /// Resets the stream with the protocol's internal error.
    func resetWithInternalError(_ id: Int64)
}
