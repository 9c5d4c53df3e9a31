// SPDX-License-Identifier: Apache-2.0
// The SwiftNIO floor: a proxy's sockets on NIO channels, with no HTTP work on top.
//
//   nio-probe pass LISTEN UPSTREAM   relay bytes between each client and its own upstream connection
//   nio-probe respond LISTEN         answer each request head with a fixed response (no upstream)
//
// Channels are set up as Jester's worker sets up its own (TCP_NODELAY, half-closure, a 1 KiB first receive
// buffer), one event loop, and the handlers write through each other's contexts as Jester's connections do. What
// this process spends per request is what any proxy built on NIO channels spends before parsing anything.

import NIOCore
import NIOPosix
import CProbeLibc

/// One side of a relayed pair: what it reads goes to its partner.
final class Relay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let upstream: SocketAddress?
    private var context: ChannelHandlerContext?
    private var partner: Relay?
    private var connecting = false
    /// Bytes read from the client before the upstream connection was up.
    private var early: [ByteBuffer] = []
    private var wrote = false

    /// `upstream` is where a client side connects on its first bytes; nil for the upstream side itself.
    init(upstream: SocketAddress?, partner: Relay? = nil) {
        self.upstream = upstream
        self.partner = partner
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if let partner {
            partner.context?.write(wrapOutboundOut(bytes), promise: nil)
            partner.wrote = true
            return
        }
        early.append(bytes)
        guard !connecting, let upstream else { return }
        connecting = true
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.syncOptions!.setOption(.tcpOption(.tcp_nodelay), value: 1)
                    try channel.pipeline.syncOperations.addHandler(Relay(upstream: nil, partner: self))
                }
            }
            .connect(to: upstream)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    let other = try! channel.pipeline.syncOperations.handler(type: Relay.self)
                    self.partner = other
                    for bytes in self.early { other.context?.write(self.wrapOutboundOut(bytes), promise: nil) }
                    self.early = []
                    other.context?.flush()
                case .failure:
                    context.close(promise: nil)
                }
            }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let partner, partner.wrote {
            partner.wrote = false
            partner.context?.flush()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        partner = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .inputClosed { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// Answers every request head with the same small response, closing after it when the request asked to.
final class Responder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Shared by every connection (a ByteBuffer copy shares its storage), so the idle figure is NIO's alone.
    static let (keepAlive, close): (ByteBuffer, ByteBuffer) = {
        let body = "Hello from the benchmark upstream, a small fixed body of about one hundred bytes long.....\n"
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
        return (ByteBuffer(string: head + "\r\n" + body), ByteBuffer(string: head + "Connection: close\r\n\r\n" + body))
    }()
    private var received: ByteBuffer?
    private var closing = false
    private var consumed = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received != nil { received!.writeBuffer(&bytes) } else { received = bytes }
        received!.withUnsafeReadableBytes { view in
            var start = 0
            while let end = find("\r\n\r\n", in: view, from: start, to: view.count) {
                let asksToClose = find("Connection: close", in: view, from: start, to: end) != nil
                context.write(wrapOutboundOut(asksToClose ? Self.close : Self.keepAlive), promise: nil)
                start = end
                if asksToClose { closing = true; break }
            }
            consumed = start
        }
        received!.moveReaderIndex(forwardBy: consumed)
        if received!.readableBytes == 0 { received = nil }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        if closing { context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .inputClosed { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// Where `needle` ends in `bytes[from..<to]`, or nil (memmem: the stdlib's generic `firstRange(of:)` costs
/// tens of microseconds per call here).
func find(_ needle: StaticString, in bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
    guard let base = bytes.baseAddress,
          let found = memmem(base + from, to - from, needle.utf8Start, needle.utf8CodeUnitCount) else { return nil }
    return base.distance(to: found) + needle.utf8CodeUnitCount
}

func address(_ text: String) -> SocketAddress {
    let colon = text.lastIndex(of: ":")!
    return try! SocketAddress(ipAddress: String(text[..<colon]), port: Int(text[text.index(after: colon)...])!)
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, ["pass", "respond"].contains(arguments[1]), arguments[1] == "respond" || arguments.count == 4
else {
    print("usage: nio-probe pass LISTEN UPSTREAM | nio-probe respond LISTEN")
    exit(2)
}
let upstream = arguments[1] == "pass" ? address(arguments[3]) : nil
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            let options = channel.syncOptions!
            try options.setOption(.allowRemoteHalfClosure, value: true)
            try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
            try options.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                minimum: 64, initial: 1024, maximum: 65536))
            let handler: any ChannelHandler = upstream.map { Relay(upstream: $0) }
                ?? Responder()
            try channel.pipeline.syncOperations.addHandler(handler)
        }
    }
    .bind(to: address(arguments[2])).wait()
try server.closeFuture.wait()
