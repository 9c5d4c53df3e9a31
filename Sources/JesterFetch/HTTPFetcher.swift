// SPDX-License-Identifier: Apache-2.0
import JesterTLS
import NIOCore
import NIOPosix

/// A minimal HTTP/1.1 client for the master's own fetches (a JWKS today): one GET per connection, over TLS for
/// https with the server's certificate checked against the system's CA store and the URL's host name.
///
/// Why not a general client library: the master must stay small and own every byte it parses, and the pieces
/// already exist here (JesterCore's strict parser, JesterTLS's client side). One request per connection
/// (`Connection: close`) because fetches are minutes apart; a kept-alive connection would only be a socket
/// to babysit.
///
/// Loop-confined: every fetch runs on `eventLoop`, whose thread also builds the TLS context on first use.
public final class HTTPFetcher: @unchecked Sendable {
    public let eventLoop: any EventLoop
    /// CAs to trust instead of the system's (tests); nil: /etc/ssl/certs.
    private let trustedCAPEM: [UInt8]?
    private var tlsContext: TLSClientContext?
    /// Sent as `User-Agent`, so an identity provider's logs name the caller.
    public let userAgent: String

    public init(eventLoop: any EventLoop, trustedCAPEM: [UInt8]? = nil, userAgent: String = "jester") {
        self.eventLoop = eventLoop
        self.trustedCAPEM = trustedCAPEM
        self.userAgent = userAgent
    }

    /// GETs `url`. The future fails with a `FetchError` when no complete response arrives within `timeout`
    /// (connection, handshake and body together) or the body exceeds `maximumBodySize`; any status succeeds
    /// (the caller decides what a 404 means).
    public func get(
        _ url: FetchURL, timeout: TimeAmount, maximumBodySize: Int, accept: String = "*/*"
    ) -> EventLoopFuture<FetchResponse> {
        eventLoop.flatSubmit { self.start(url, timeout: timeout, maximumBodySize: maximumBodySize, accept: accept) }
    }

    private func start(
        _ url: FetchURL, timeout: TimeAmount, maximumBodySize: Int, accept: String
    ) -> EventLoopFuture<FetchResponse> {
        let promise = eventLoop.makePromise(of: FetchResponse.self)
        let tls: TLSClientContext?
        do {
            tls = url.scheme == .https ? try tlsContext ?? TLSClientContext(caPEM: trustedCAPEM, verify: true) : nil
        } catch {
            promise.fail(FetchError(.tls, "cannot set up TLS for \(url.authority)", cause: error))
            return promise.futureResult
        }
        if let tls { tlsContext = tls }
        let request = "GET \(url.target) HTTP/1.1\r\nHost: \(url.authority)\r\nUser-Agent: \(userAgent)\r\n"
            + "Accept: \(accept)\r\nConnection: close\r\n\r\n"
        let handler = FetchChannelHandler(
            request: Array(request.utf8), parser: FetchResponseParser(maximumBodySize: maximumBodySize),
            promise: promise, waitsForHandshake: tls != nil)
        let expiry = eventLoop.scheduleTask(in: timeout) {
            handler.fail(FetchError(.timeout, "no complete response from \(url.authority) within \(timeout)"))
        }
        promise.futureResult.whenComplete { _ in expiry.cancel() }
        let host = url.host
        let authority = url.authority
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let tlsHandler = TLSHandler(client: tls.makeConnection(host: host)) { result in
                            if case .failure(let error) = result {
                                handler.fail(FetchError(.tls, "TLS with \(authority) failed", cause: error))
                            }
                        }
                        try channel.pipeline.syncOperations.addHandler(tlsHandler)
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: url.host, port: url.port)
            .whenFailure { error in
                handler.fail(FetchError(.connect, "cannot connect to \(authority)", cause: error))
            }
        return promise.futureResult
    }
}

/// The fetch's end of its connection: sends the request once the connection (and TLS) is up, feeds what comes
/// back to a `FetchResponseParser`, and completes the promise exactly once, closing the connection with it.
private final class FetchChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let request: [UInt8]
    private var parser: FetchResponseParser
    private let promise: EventLoopPromise<FetchResponse>
    /// Over TLS the request waits for `TLSEstablished`: the handler below refuses plaintext before it.
    private let waitsForHandshake: Bool
    private var context: ChannelHandlerContext?
    private var finished = false

    init(request: [UInt8], parser: FetchResponseParser, promise: EventLoopPromise<FetchResponse>, waitsForHandshake: Bool) {
        self.request = request
        self.parser = parser
        self.promise = promise
        self.waitsForHandshake = waitsForHandshake
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The fetch timed out while connecting: the late connection is not used.
        if finished { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if !waitsForHandshake { send(context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSEstablished { send(context) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        let bytes = unwrapInboundIn(data)
        settle(parser.received(bytes.readableBytesView))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !finished { settle(parser.closed()) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            fail(FetchError(.tls, "TLS failed", cause: error))
        } else {
            fail(FetchError(.connect, "the connection failed", cause: error))
        }
    }

    /// Ends the fetch with `error` (a timeout, a refused connection, a failed handshake); later calls do nothing.
    func fail(_ error: FetchError) {
        finish(.failure(error))
    }

    private func send(_ context: ChannelHandlerContext) {
        guard !finished else { return }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: request)), promise: nil)
    }

    private func settle(_ progress: FetchResponseParser.Progress) {
        switch progress {
        case .needMoreBytes: break
        case .complete(let response): finish(.success(response))
        case .failed(let error): finish(.failure(error))
        }
    }

    private func finish(_ result: Result<FetchResponse, FetchError>) {
        guard !finished else { return }
        finished = true
        context?.close(promise: nil)
        switch result {
        case .success(let response): promise.succeed(response)
        case .failure(let error): promise.fail(error)
        }
    }
}
