// SPDX-License-Identifier: Apache-2.0
import NIOCore
import NIOEmbedded

@testable import JesterProxy

/// An upstream connector for the embedded tier: every connection the pool opens is an `EmbeddedChannel` on the
/// test's `EmbeddedEventLoop`, which the test plays the target on. It reads what Jester wrote upstream and
/// writes the target's answer, so the whole exchange (client connection, pool, upstream connection) runs with
/// real bytes and the embedded loop's clock, without a socket.
///
/// Loop-confined like the pool it serves (everything happens on the test's thread), hence `@unchecked Sendable`.
final class EmbeddedConnector: UpstreamConnector, @unchecked Sendable {
    /// How a target takes a connection attempt.
    enum Answer {
        /// The connection comes up at once.
        case accept
        /// The attempt fails at once, as a closed port answers (RST): 502 unless another target helps.
        case refuse
        /// Nothing answers: the attempt fails when its connect timeout passes (on the loop's clock), as a
        /// dropped SYN does: 504.
        case silent
    }

    let loop: EmbeddedEventLoop
    /// How each target port answers; `accept` when not listed.
    var answers: [Int: Answer] = [:]
    /// Every connection that came up, oldest first.
    private(set) var upstreams: [EmbeddedUpstream] = []
    /// Every connection attempt, whatever its answer, by target port: the proof that a request never reached
    /// an upstream is that this stayed empty.
    private(set) var attempts: [Int] = []

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    /// The connections that came up to the target on `port`, oldest first.
    func upstreams(port: Int) -> [EmbeddedUpstream] {
        upstreams.filter { $0.port == port }
    }

    func connect(
        to address: SocketAddress, kind: UpstreamChannelKind, timeout: TimeAmount, on eventLoop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<any Channel> {
        precondition(eventLoop === loop, "the pool runs on the test's loop")
        let port = address.port ?? 0
        attempts.append(port)
        switch answers[port] ?? .accept {
        case .refuse:
            return loop.makeFailedFuture(IOError(errnoCode: 111, reason: "connect"))  // ECONNREFUSED
        case .silent:
            let promise = loop.makePromise(of: (any Channel).self)
            loop.scheduleTask(in: timeout) { promise.fail(ChannelError.connectTimeout(timeout)) }
            return promise.futureResult
        case .accept:
            break
        }
        let channel = EmbeddedChannel(loop: loop)
        // First in the pipeline, so it sees the target's bytes before anything the initializer adds.
        if kind != .http2 { try! channel.pipeline.syncOperations.addHandler(ReadGate()) }
        let upstream = EmbeddedUpstream(port: port, kind: kind, channel: channel)
        return initializer(channel)
            .flatMap { channel.connect(to: address) }
            .map {
                self.upstreams.append(upstream)
                return channel as any Channel
            }
    }
}

/// One connection from Jester to a target, as the test plays the target.
final class EmbeddedUpstream {
    let port: Int
    let kind: UpstreamChannelKind
    let channel: EmbeddedChannel

    init(port: Int, kind: UpstreamChannelKind, channel: EmbeddedChannel) {
        self.port = port
        self.kind = kind
        self.channel = channel
    }

    var isActive: Bool { channel.isActive }

    /// Everything Jester wrote (and flushed) to the target since the last call, as text.
    func received() throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// The target sends `text`. On an HTTP/1.1 connection Jester reads it only when it asks (see `ReadGate`):
    /// at once if a read is pending, else when the next read comes (`EmbeddedEventLoop.run()` delivers it).
    func send(_ text: String) throws {
        try send(ByteBuffer(string: text))
    }

    /// The target sends `bytes` (HTTP/2 frames, say).
    func send(_ bytes: ByteBuffer) throws {
        try channel.writeInbound(bytes)
    }

    /// The target closes the connection: Jester's side sees it go inactive (bytes still held are lost, as
    /// they would be unread in a socket that was reset).
    func close() {
        _ = channel.close()
    }
}

/// Models autoRead off on an `EmbeddedChannel`, which otherwise delivers every inbound write at once: the
/// target's bytes are held until the handler asks with `read()`, one batch per read, as a socket channel with
/// autoRead off delivers them. Without it, backpressure (not reading the upstream while the client cannot take
/// more) could not be seen, and a response could reach a connection that never asked for one.
///
/// Held bytes are released on a later loop turn, never inside `read()` itself, because a socket never delivers
/// synchronously either: code that asks for a read and then sets up its state must keep working.
private final class ReadGate: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var held = CircularBuffer<ByteBuffer>()
    private var readPending = false
    /// Bytes passed up in this read cycle, so its `channelReadComplete` goes up too (a held cycle's does not).
    private var delivered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard readPending, held.isEmpty else {
            held.append(bytes)
            return
        }
        readPending = false
        delivered = true
        context.fireChannelRead(wrapInboundOut(bytes))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard delivered else { return }
        delivered = false
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        readPending = true
        if !held.isEmpty {
            context.eventLoop.assumeIsolated().execute { self.release(context: context) }
        }
        context.read()
    }

    /// Passes up the oldest held batch, if a read still waits for it.
    private func release(context: ChannelHandlerContext) {
        guard readPending, context.channel.isActive, let bytes = held.popFirst() else { return }
        readPending = false
        context.fireChannelRead(wrapInboundOut(bytes))
        context.fireChannelReadComplete()
    }
}
