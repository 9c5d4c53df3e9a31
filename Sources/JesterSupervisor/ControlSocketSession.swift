// SPDX-License-Identifier: Apache-2.0
import JesterControl
import NIOCore

/// One connection to the master's control socket (jesterctl): admits the peer by its credentials, decodes its
/// frames and hands each request to the master's dispatcher with a reply target for that request. The
/// dispatcher never sees the channel; this is the only control code that knows the transport.
final class ControlSocketSession: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let master: Master
    private var decoder = ControlFrameCodec()
    private var admitted = false

    init(master: Master) {
        self.master = master
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        master.admit(channel) { [self] in
            self.admitted = true
            self.processRequests(channel)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        decoder.append(unwrapInboundIn(data).readableBytesView)
        if admitted { processRequests(context.channel) }
    }

    private func processRequests(_ channel: any Channel) {
        do {
            while let envelope = try decoder.nextEnvelope() {
                master.controlRequest(envelope.message, from: ChannelReplyTarget(channel: channel, id: envelope.id))
            }
        } catch {
            ChannelReplyTarget(channel: channel, id: nil).send(.failure(message: "\(error)"))
            channel.close(promise: nil)
        }
    }
}

/// The answers to one request that came over a NIO channel: framed, stamped with the request's correlation id.
final class ChannelReplyTarget: ControlReplyTarget {
    let channel: any Channel
    let id: UInt64?

    init(channel: any Channel, id: UInt64?) {
        self.channel = channel
        self.id = id
    }

    func send(_ message: ControlMessage) {
        channel.writeAndFlush(ByteBuffer(bytes: ControlFrameCodec.encode(message, id: id)), promise: nil)
    }

    var isOpen: Bool { channel.isActive }

    func close() {
        channel.close(promise: nil)
    }
}
