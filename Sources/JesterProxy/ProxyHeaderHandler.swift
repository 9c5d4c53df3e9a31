// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// The real client of a connection, as a trusted load balancer's PROXY protocol header named it.
struct ProxiedClient {
    let addresses: ProxyProtocol.Addresses
    var address: String { addresses.source.description }
}

/// Writes a PROXY protocol header first on a connection to a target (`send_proxy_protocol`), before anything
/// else, TLS included: it sits first in the pipeline and puts the header in front of the first write that
/// passes (NIO completes the connect promise, and the request may be written, before channelActive is fired).
final class ProxyHeaderSender: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var header: [UInt8]?

    init(version: String, client: ProxyProtocol.Addresses) {
        header = version == "v2" ? ProxyProtocol.encodeV2(client) : ProxyProtocol.encodeV1(client)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if let header {
            self.header = nil
            context.write(wrapOutboundOut(ByteBuffer(bytes: header)), promise: nil)
        }
        context.write(data, promise: promise)
    }
}

/// Reads the PROXY protocol header (v1 or v2) that a trusted load balancer sends before anything else on a
/// connection, tells the handlers above who the client really is, and then leaves the pipeline.
///
/// First in the pipeline, below TLS: the header precedes the TLS handshake. Connections from addresses outside
/// `proxy_protocol_from` are passed through untouched (the handler removes itself at once), so a client cannot
/// claim another identity by sending a header of its own.
final class ProxyHeaderHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let trusted: [CIDR]
    private let runtime: WorkerRuntime
    private var header: [UInt8] = []
    private var done = false

    init(trusted: [CIDR], runtime: WorkerRuntime) {
        self.trusted = trusted
        self.runtime = runtime
    }

    func channelActive(context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress?.ipAddress.flatMap { IPAddressBytes($0) }
        context.fireChannelActive()
        if peer == nil || !trusted.contains(where: { $0.contains(peer!) }) { finish(context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else {
            context.fireChannelRead(data)
            return
        }
        header += unwrapInboundIn(data).readableBytesView
        switch ProxyProtocol.parse(header) {
        case .needMoreBytes:
            return
        case .invalid(let reason):
            runtime.logWarning("connection refused: \(reason)", metadata: [
                "load_balancer": "\(context.channel.remoteAddress?.ipAddress ?? "-")"])
            done = true
            context.close(promise: nil)
        case .header(let length, let addresses):
            // A LOCAL header (the balancer's own health check) keeps the connection's addresses.
            if let addresses { context.fireUserInboundEventTriggered(ProxiedClient(addresses: addresses)) }
            let rest = header.count > length ? ByteBuffer(bytes: header[length...]) : nil
            header = []
            done = true
            if let rest { context.fireChannelRead(wrapInboundOut(rest)) }
            // Events first, then out of the pipeline: a removed handler's context passes nothing on. The
            // channelReadComplete of this socket read then goes straight to the handler above.
            finish(context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Until the header is complete nothing goes up, so the demand of the handler above is still open.
        if done { context.fireChannelReadComplete() } else { context.read() }
    }

    private func finish(_ context: ChannelHandlerContext) {
        done = true
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
