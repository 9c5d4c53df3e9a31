// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// Fired up the pipeline once the handshake completes, before the first plaintext byte.
public struct TLSEstablished: Sendable {
    public let facts: TLSSessionFacts
}

/// TLS on a channel: ciphertext below, plaintext above; the server side of client connections, or the client side
/// of connections to upstream targets. Makes no OpenSSL call itself (that is `TLSConnection`'s job); it decides
/// when to read, write and flush.
///
/// Reads follow the handler above it, which reads on demand (`autoRead` off): its `read()` is passed down, and
/// when the bytes that arrive decrypt to nothing (a partial record, a handshake message) the handler reads
/// again itself, so a pending demand is never lost. During the handshake it reads until the handshake is done.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case handshaking
        case established
        /// The peer sent close_notify; we may still write.
        case inputClosed
        case closed
    }

    private let connection: TLSConnection
    private var state = State.handshaking
    /// The handler above asked for bytes and has not been given any since.
    private var readRequested = false
    /// Plaintext was passed up since the last channelReadComplete.
    private var deliveredPlaintext = false
    /// Ciphertext was written and not flushed (handshake messages, alerts, tickets).
    private var outputUnflushed = false
    private var outputClosed = false
    private var sawFirstByte = false
    /// Client side: told once how the handshake ended (before any plaintext is written).
    private var handshakeObserver: ((Result<TLSSessionFacts, TLSError>) -> Void)?
    private let isClient: Bool

    /// The server side of a client's connection.
    public init(context: TLSServerContext) {
        connection = context.makeConnection()
        isClient = false
    }

    /// The client side: starts the handshake when the channel becomes active and reports its outcome.
    public init(client connection: TLSConnection, handshakeCompleted: @escaping (Result<TLSSessionFacts, TLSError>) -> Void) {
        self.connection = connection
        isClient = true
        handshakeObserver = handshakeCompleted
    }

    /// The session to resume on the next connection to the same peer (client side; tickets arrive after the
    /// handshake, so ask after the first response).
    public var session: TLSSession? { connection.session }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        guard isClient, state == .handshaking else { return }
        // The ClientHello.
        if case .failed(let error) = connection.handshake() {
            fail(context, error)
            return
        }
        writeOutput(context, promise: nil)
        context.flush()
        context.read()
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let ciphertext = unwrapInboundIn(data)
        guard state == .handshaking || state == .established else { return }
        if !sawFirstByte, !isClient {
            sawFirstByte = true
            if Self.looksLikePlainHTTP(ciphertext) {
                refusePlainHTTP(context)
                return
            }
        }
        ciphertext.withUnsafeReadableBytes { connection.feed($0) }
        if state == .handshaking {
            switch connection.handshake() {
            case .complete:
                state = .established
                writeOutput(context, promise: nil)
                let facts = connection.facts
                context.fireUserInboundEventTriggered(TLSEstablished(facts: facts))
                handshakeObserver?(.success(facts))
                handshakeObserver = nil
            case .failed(let error):
                fail(context, error)
                return
            default:
                writeOutput(context, promise: nil)
                return
            }
        }
        readPlaintext(context, hint: ciphertext.readableBytes)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if outputUnflushed {
            outputUnflushed = false
            context.flush()
        }
        if deliveredPlaintext {
            deliveredPlaintext = false
            context.fireChannelReadComplete()
        } else if state == .handshaking || (state == .established && readRequested) {
            context.read()
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        handshakeObserver?(.failure(TLSError("handshake: the peer closed the connection")))
        handshakeObserver = nil
        context.fireChannelInactive()
    }

    /// A connection that never became active (its connect failed) is torn down without `channelInactive`: the
    /// handshake's observer still hears how it ended, so whoever waits on it (a pool's promise) is not left
    /// waiting, and no promise is dropped unfulfilled.
    public func handlerRemoved(context: ChannelHandlerContext) {
        handshakeObserver?(.failure(TLSError("handshake: the connection closed before it was made")))
        handshakeObserver = nil
    }

    private func readPlaintext(_ context: ChannelHandlerContext, hint: Int) {
        while state == .established {
            // Plaintext is never longer than the ciphertext it came in (plus a record OpenSSL holds back).
            let capacity = min(max(hint, 2048), 16 * 1024 + 256)
            var buffer = context.channel.allocator.buffer(capacity: capacity)
            var progress = TLSConnection.Progress.needsInput
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { space in
                progress = connection.read(into: space)
                if case .bytes(let count) = progress { return count }
                return 0
            }
            switch progress {
            case .bytes:
                deliveredPlaintext = true
                readRequested = false
                context.fireChannelRead(wrapInboundOut(buffer))
            case .closed:
                // close_notify: the client will send nothing more, but may still read the answer, like a TCP
                // half-close, which is how the handler above treats it.
                state = .inputClosed
                writeOutput(context, promise: nil)
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            case .failed(let error):
                fail(context, error)
            case .needsInput, .complete:
                writeOutput(context, promise: nil)
                return
            }
        }
    }

    // MARK: Outbound

    public func read(context: ChannelHandlerContext) {
        readRequested = true
        context.read()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard state == .established || state == .inputClosed, !outputClosed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let plaintext = unwrapOutboundIn(data)
        if let error = plaintext.withUnsafeReadableBytes({ connection.write($0) }) {
            promise?.fail(error)
            fail(context, error)
            return
        }
        writeOutput(context, promise: promise)
    }

    public func flush(context: ChannelHandlerContext) {
        outputUnflushed = false
        context.flush()
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode != .input, !outputClosed {
            // close_notify first (RFC 8446 §6.1), so the client can tell a complete response from a cut one.
            outputClosed = true
            connection.shutdown()
            writeOutput(context, promise: nil)
            context.flush()
        }
        if mode == .all { state = .closed }
        context.close(mode: mode, promise: promise)
    }

    // MARK: Helpers

    /// Writes whatever ciphertext the session has produced; `promise` completes with it (or at once when there
    /// is none, in order behind earlier writes).
    private func writeOutput(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        let count = connection.outputCount
        guard count > 0 else {
            if let promise { context.write(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise) }
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: count)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { connection.takeOutput(into: $0) }
        outputUnflushed = true
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    /// A client that speaks plain HTTP to the TLS port (a wrong `http://` URL) starts with a method name where a
    /// TLS record starts with 0x16: it gets a readable answer instead of a bare close, as nginx does.
    static func looksLikePlainHTTP(_ bytes: ByteBuffer) -> Bool {
        guard let first = bytes.readableBytesView.first, first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z") else {
            return false
        }
        return bytes.readableBytesView.prefix(16).contains(UInt8(ascii: " "))
    }

    private func refusePlainHTTP(_ context: ChannelHandlerContext) {
        state = .closed
        outputClosed = true
        let body = "This port speaks HTTPS: the request was sent over plain HTTP.\n"
        let response = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n" + body
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: response)), promise: nil)
        context.fireErrorCaught(TLSError("handshake: plain HTTP sent to the TLS port"))
        context.close(promise: nil)
    }

    /// A fatal TLS error: the alert OpenSSL queued goes out, the handler above learns why, the channel closes.
    private func fail(_ context: ChannelHandlerContext, _ error: TLSError) {
        guard state != .closed else { return }
        state = .closed
        outputClosed = true
        writeOutput(context, promise: nil)
        context.flush()
        if let observer = handshakeObserver {
            handshakeObserver = nil
            observer(.failure(error))
        } else {
            context.fireErrorCaught(error)
        }
        context.close(promise: nil)
    }
}
