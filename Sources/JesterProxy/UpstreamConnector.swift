// SPDX-License-Identifier: Apache-2.0
import NIOCore
import NIOPosix

/// What a new upstream channel carries, and so how its socket is set up.
///
/// An enum rather than a bag of channel options: the pool says what it needs the connection for, and the
/// connector (a socket one in production, an embedded one in tests) decides what that means for its transport.
enum UpstreamChannelKind: Sendable {
    /// An HTTP/1.1 connection (`UpstreamConnection`): reads only when asked (autoRead off), which is how a slow
    /// client holds back the upstream instead of Jester buffering the whole response.
    case http1
    /// An HTTP/2 connection (`HTTP2UpstreamConnection`): reads on its own (autoRead on), since many streams share
    /// it and HTTP/2's own flow control does the holding back per stream.
    case http2
    /// The raw byte stream of a tcp listener (`TCPProxyConnection`): reads when asked, and keeps a half-closed
    /// connection open so each direction can end on its own.
    case stream
}

/// Opens connections to upstream targets for `UpstreamPool`.
///
/// The pool decides which target, how often to try and what a failure means; how a channel to an address comes
/// to exist is this one call. The seam is what lets the exchange be tested on `EmbeddedChannel` with real
/// upstream traffic (the tests inject a connector that hands out embedded channels), without the pool knowing.
///
/// The call must not allocate beyond what making the channel costs: it is on the path of every new upstream
/// connection, which the allocation budget counts (`test_allocations_per_request_stay_within_budget`).
protocol UpstreamConnector: Sendable {
    /// A channel connected to `address` on `eventLoop`, its pipeline set up by `initializer` before it connects
    /// (as `ClientBootstrap.channelInitializer` does), or the failure: `ChannelError.connectTimeout` when
    /// `timeout` passed first (which the pool answers with 504), any other error for a refused or reset attempt
    /// (502 when no other target helps).
    func connect(
        to address: SocketAddress, kind: UpstreamChannelKind, timeout: TimeAmount, on eventLoop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel>
}

/// The production connector: a TCP connection made with `ClientBootstrap`, configured as the pool always has.
///
/// A struct without stored properties: kept in an existential it needs no box, and a call is a witness-table
/// call, so injecting it costs the hot path nothing.
struct SocketConnector: UpstreamConnector {
    /// Whether Nagle's algorithm is off. Always: a proxy writes a head and then body pieces, and waiting for the
    /// ACK of the first before sending the second (the delayed ACK) costs tens of milliseconds per request.
    private static let noDelay: SocketOptionValue = 1

    func connect(
        to address: SocketAddress, kind: UpstreamChannelKind, timeout: TimeAmount, on eventLoop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: eventLoop)
        switch kind {
        case .http1:
            _ = bootstrap.channelOption(.autoRead, value: false)
        case .http2:
            break
        case .stream:
            _ = bootstrap.channelOption(.autoRead, value: false).channelOption(.allowRemoteHalfClosure, value: true)
        }
        return bootstrap
            .channelOption(.tcpOption(.tcp_nodelay), value: Self.noDelay)
            .connectTimeout(timeout)
            .channelInitializer(initializer)
            .connect(to: address)
    }
}
