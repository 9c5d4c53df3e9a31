// SPDX-License-Identifier: Apache-2.0
import JesterHTTP3
import NIOCore

/// A worker's loopback UDP socket for one HTTP/3 address where the kernel does not steer by connection ID: it
/// takes the datagrams other workers forward to this one (`QUICForwarding`) and hands them to the listener, and
/// it sends the ones this worker passes on. Loop-confined.
final class QUICForwardingInbox: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// The listener it serves (which keeps this inbox).
    weak var listener: HTTP3Listener?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // Only workers on this host send here (and the tag proves which instance).
        guard envelope.remoteAddress.isLoopback else { return }
        listener?.receivedForwarded(Array(envelope.data.readableBytesView))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        listener?.finishReadBatch()
    }

    /// Sends `message` (an encapsulated datagram) to the inbox on loopback `port`.
    func send(_ message: [UInt8], toPort port: Int) {
        guard let context, let destination = try? SocketAddress(ipAddress: "127.0.0.1", port: port) else { return }
        context.writeAndFlush(
            wrapOutboundOut(AddressedEnvelope(remoteAddress: destination, data: context.channel.allocator.buffer(
                bytes: message))),
            promise: nil)
    }
}

extension SocketAddress {
    /// 127.0.0.0/8 or ::1.
    fileprivate var isLoopback: Bool {
        switch self {
        case .v4(let address): (UInt32(bigEndian: address.address.sin_addr.s_addr) >> 24) == 127
        case .v6: ipAddress == "::1"
        default: false
        }
    }
}
