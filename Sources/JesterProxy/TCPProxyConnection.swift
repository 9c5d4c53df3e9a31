// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterMetrics
import NIOCore

/// One client connection of a tcp listener: relays bytes both ways between the client and a target of the
/// listener's pool, with backpressure (each side is read only while the other can take more), half-close
/// passed through, an idle timeout, and the PROXY protocol on either side when configured.
///
/// Loop-confined, hence `@unchecked Sendable`. Draining does not cut a stream short: the worker's drain timeout
/// does, as for WebSockets.
final class TCPProxyConnection: ChannelInboundHandler, ClientConnection, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// A trusted load balancer's connection: its PROXY header comes first.
        case readingProxyHeader
        /// Connecting to a target; client bytes wait in `pending`.
        case connecting
        case relaying
        case closed
    }

    private let runtime: WorkerRuntime
    let listener: ListenerSettings
    private let pool: UpstreamPool
    private let trusted: [CIDR]
    private var context: ChannelHandlerContext?
    private var upstream: (any Channel)?
    private var target: Int?
    private var state = State.connecting
    private var pending: [ByteBuffer] = []
    private var header: [UInt8] = []
    private var clientAddress = "-"
    /// The client as the PROXY protocol tells it: the real one behind a load balancer, else the peer.
    private var client: ProxyProtocol.Addresses?
    private var clientInputClosed = false
    private var upstreamInputClosed = false
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    /// The listener's metric ids, found once per connection (nil without metrics).
    private let metricsListener: ListenerMetricIDs?

    init(runtime: WorkerRuntime, listener: ListenerSettings, pool: UpstreamPool) {
        self.runtime = runtime
        self.listener = listener
        self.pool = pool
        trusted = (listener.proxyProtocolFrom ?? []).compactMap(CIDR.init)
        metricsListener = runtime.metrics?.ids.listeners[listener.name]
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress
        clientAddress = peer?.ipAddress ?? "-"
        guard runtime.register(self, clientAddress: clientAddress) else {
            context.close(promise: nil)
            return
        }
        if let ip = IPAddressBytes(clientAddress), let local = context.channel.localAddress,
            let localIP = local.ipAddress.flatMap({ IPAddressBytes($0) })
        {
            client = ProxyProtocol.Addresses(
                source: ip, sourcePort: peer?.port ?? 0, destination: localIP, destinationPort: local.port ?? 0)
            if trusted.contains(where: { $0.contains(ip) }) { state = .readingProxyHeader }
        }
        armIdleCheck()
        if state == .connecting { connect() }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastActivity = .now()
        switch state {
        case .readingProxyHeader:
            header += bytes.readableBytesView
            switch ProxyProtocol.parse(header) {
            case .needMoreBytes:
                return
            case .invalid(let reason):
                runtime.logWarning("tcp connection refused: \(reason)", metadata: ["client": "\(clientAddress)"])
                close()
                return
            case .header(let length, let addresses):
                if let addresses { client = addresses }
                if header.count > length {
                    pending.append(ByteBuffer(bytes: header[length...]))
                }
                header = []
                state = .connecting
                connect()
            }
        case .connecting:
            pending.append(bytes)
        case .relaying:
            relayed(received: bytes.readableBytes)
            upstream?.write(bytes.readSlice(length: bytes.readableBytes)!, promise: nil)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard state == .relaying, let upstream else {
            if state == .readingProxyHeader { context.read() }
            return
        }
        upstream.flush()
        if upstream.isWritable { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, !upstreamInputClosed { upstream?.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else { return }
        clientInputClosed = true
        switch state {
        case .relaying:
            upstream?.close(mode: .output, promise: nil)
            if upstreamInputClosed { close() }
        case .connecting:
            break  // the target gets the bytes so far, then the half-close, once connected
        case .readingProxyHeader, .closed:
            close()  // ended before its PROXY header was complete
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        close()
        runtime.unregister(self, clientAddress: clientAddress)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close()
    }

    /// Streams are not cut short by a drain; the worker's drain timeout ends them.
    func drain() {}

    /// A relayed stream is not a request: closed at the drain timeout, counted as none.
    func cut() -> Int {
        close()
        return 0
    }

    // MARK: Upstream side

    private func connect() {
        let hash = client.map { SplitMix64.hash($0.source.bytes) }
        pool.openStream(hashKey: hash, handler: { StreamRelay(connection: self) }) { result in
            switch result {
            case .failure(let failure):
                self.runtime.logWarning("tcp connection to upstream failed", metadata: [
                    "upstream": "\(self.pool.name)", "client": "\(self.clientAddress)", "error": "\(failure.reason)",
                ])
                self.close()
            case .success(let (channel, target)):
                guard self.state == .connecting, let context = self.context else {
                    self.pool.streamEnded(target: target)
                    channel.close(promise: nil)
                    return
                }
                self.upstream = channel
                self.target = target
                self.state = .relaying
                if let version = self.pool.settings.sendProxyProtocol, let client = self.client {
                    let header = version == "v2" ? ProxyProtocol.encodeV2(client) : ProxyProtocol.encodeV1(client)
                    channel.write(ByteBuffer(bytes: header), promise: nil)
                }
                for bytes in self.pending {
                    self.relayed(received: bytes.readableBytes)
                    channel.write(bytes, promise: nil)
                }
                self.pending = []
                channel.flush()
                if self.clientInputClosed { channel.close(mode: .output, promise: nil) }
                channel.read()
                context.read()
            }
        }
    }

    fileprivate func upstreamRead(_ bytes: ByteBuffer) {
        lastActivity = .now()
        guard let context else { return }
        relayed(sent: bytes.readableBytes)
        context.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Bytes relayed, client to target (`received`) or back (`sent`), counted as they pass (jester-metrics(7)):
    /// a stream that lasts for hours shows in the totals while it lasts, not only once it ends.
    private func relayed(received: Int = 0, sent: Int = 0) {
        guard let metricsListener else { return }
        runtime.metrics?.bytesRelayed(listener: metricsListener, received: Int64(received), sent: Int64(sent))
    }

    fileprivate func upstreamReadComplete() {
        guard let context else { return }
        context.flush()
        if context.channel.isWritable { upstream?.read() }
    }

    fileprivate func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable, !clientInputClosed { context?.read() }
    }

    fileprivate func upstreamInputEnded() {
        upstreamInputClosed = true
        context?.close(mode: .output, promise: nil)
        if clientInputClosed { close() }
    }

    fileprivate func upstreamClosed() {
        close()
    }

    // MARK: Ending

    private func armIdleCheck() {
        let timeout = listener.idleTimeout ?? .seconds(3600)
        let nanoseconds = TimeAmount(timeout).nanoseconds
        idleCheck = context?.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(max(nanoseconds / 4, 1_000_000))) {
            guard self.state != .closed else { return }
            if NIODeadline.now() - self.lastActivity >= .nanoseconds(nanoseconds) {
                self.close()
            } else {
                self.armIdleCheck()
            }
        }
    }

    private func close() {
        guard state != .closed else { return }
        state = .closed
        idleCheck?.cancel()
        if let target {
            self.target = nil
            pool.streamEnded(target: target)
        }
        upstream?.close(promise: nil)
        upstream = nil
        pending = []
        if let context {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated()
                .whenComplete { _ in context.close(promise: nil) }
        }
    }
}

/// The upstream side of a TCP relay: hands everything to its `TCPProxyConnection`.
private final class StreamRelay: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var connection: TCPProxyConnection?

    init(connection: TCPProxyConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection?.upstreamRead(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { connection?.upstreamInputEnded() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let connection = self.connection
        self.connection = nil  // no cycle once the stream is over
        connection?.upstreamClosed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
