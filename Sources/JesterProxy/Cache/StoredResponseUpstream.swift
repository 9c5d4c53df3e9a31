// SPDX-License-Identifier: Apache-2.0
import JesterCacheStore
import JesterCore
import JesterHTTP2
import NIOCore

/// A response the cache answers with, played to the exchange's adapter as if an upstream sent it: the head as an
/// HTTP/1.1-form `HTTPHead`, then the body from its file in pieces as the client takes them (`read()`), then the
/// end. The adapters need no cache code: a hit goes through the same response phase as a fetched response
/// (response filters such as compression, the access log, metrics, error pages), whatever protocol the client
/// speaks.
///
/// Loop-confined; deliveries always happen on a later turn of the loop, never inside a call from the adapter, as
/// a socket's reads would.
final class StoredResponseUpstream: ExchangeUpstream, @unchecked Sendable {
    let pool: UpstreamPool
    /// No target of the pool answered: `Int.max` reads as "none" wherever a target index is looked up.
    var target: Int { Int.max }
    var targetDescription: String { "cache" }
    var isWritable: Bool { true }
    var completedExchanges: Int { 0 }
    var responseFramingIsSynthesized: Bool { false }
    var responseWait: Int64? { nil }
    var isCacheAnswer: Bool { true }

    private let eventLoop: any EventLoop
    let response: CachedResponse
    private weak var delegate: (any UpstreamConnectionDelegate)?
    private var headSent = false
    private var ended = false
    private var deliveryScheduled = false

    /// The stale-while-revalidate refresh to start with the request the adapter renders.
    private var refresh: BackgroundRefresh?

    init(pool: UpstreamPool, eventLoop: any EventLoop, response: CachedResponse, refresh: BackgroundRefresh? = nil) {
        self.pool = pool
        self.eventLoop = eventLoop
        self.response = response
        self.refresh = refresh
    }

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        self.delegate = delegate
        if let refresh {
            self.refresh = nil
            refresh.start(requestHead: requestHead)
        }
        scheduleDelivery()
    }

    func sendBody(_ bytes: ByteBuffer) {}
    func endRequest(trailers: [HTTP2Field]) {}
    func writeTunnel(_ bytes: ByteBuffer) {}
    func flush() {}
    func startTunnel() {}

    func read() {
        if headSent, !ended { scheduleDelivery() }
    }

    func close() {
        ended = true
        delegate = nil
    }

    func release(reusable: Bool) { close() }
    func finished(failed: Bool) { close() }

    private func scheduleDelivery() {
        guard !deliveryScheduled else { return }
        deliveryScheduled = true
        eventLoop.execute { [self] in
            deliveryScheduled = false
            deliver()
        }
    }

    /// The head on the first turn, then one piece of body per read the adapter asks for, then the end.
    private func deliver() {
        guard let delegate, !ended else { return }
        if !headSent {
            headSent = true
            delegate.upstreamResponseHead(response.head, bytes: response.headBytes)
        }
        guard !ended else { return }
        switch response.body?.nextPiece(allocator: response.allocator) {
        case .some(.piece(let piece)):
            delegate.upstreamResponseBody(piece)
            if response.body?.isFinished == true {
                // The whole body went: the end in the same turn (a small hit is one turn of the loop).
                ended = true
                delegate.upstreamResponseEnd(reusable: false)
            }
            delegate.upstreamReadComplete()
        case .some(.failed):
            ended = true
            delegate.upstreamFailed(.closedEarly, responseStarted: true)
        case .some(.end), nil:
            ended = true
            delegate.upstreamResponseEnd(reusable: false)
            delegate.upstreamReadComplete()
        }
    }
}

/// A response made from the cache: a rendered head and, unless it has none, the stored body.
struct CachedResponse {
    let head: HTTPHead
    let headBytes: ByteBuffer
    let body: StoredBodyReader?
    let allocator: ByteBufferAllocator

    /// A head with `status`, `fields` (stored fields and the cache's own: `Age`, `Cache-Status`), and, when the
    /// response has a body, its `Content-Length`. nil when the fields do not make a valid head (a stored field
    /// another version wrote badly): the caller then goes upstream.
    init?(
        status: Int, fields: [(name: String, value: String)], contentLength: Int64?, body: StoredBodyReader?,
        allocator: ByteBufferAllocator
    ) {
        var out = allocator.buffer(capacity: 256)
        out.writeString("HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\n")
        for field in fields {
            // Framing is this head's own; the stored length is the body's, written below.
            let name = field.name.lowercased()
            if name == "content-length" || name == "transfer-encoding" { continue }
            out.writeString(field.name)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        self.init(rendered: out, contentLength: contentLength, body: body, allocator: allocator)
    }

    /// A head whose status line and fields are `prefix` (a memo's, `CacheEntryMemo.headPrefix`) followed by
    /// `extra` fields and the length.
    init?(
        prefix: ByteBuffer, extra: [(name: String, value: String)], contentLength: Int64?, body: StoredBodyReader?,
        allocator: ByteBufferAllocator
    ) {
        var out = allocator.buffer(capacity: prefix.readableBytes + 128)
        out.writeImmutableBuffer(prefix)
        for field in extra {
            out.writeString(field.name)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        self.init(rendered: out, contentLength: contentLength, body: body, allocator: allocator)
    }

    private init?(
        rendered: ByteBuffer, contentLength: Int64?, body: StoredBodyReader?, allocator: ByteBufferAllocator
    ) {
        var out = rendered
        if let contentLength {
            out.writeStaticString("Content-Length: ")
            out.writeDecimal(contentLength)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
        var head = HTTPHead()
        let parser = HTTPHeadParser(limits: .init(maxHeadSize: 1 << 20, maxURILength: 1 << 16, maxFieldCount: 1000))
        let error = out.withUnsafeReadableBytes { parser.parseResponse($0, into: &head) }
        guard error == nil else { return nil }
        self.head = head
        headBytes = out
        self.body = body
        self.allocator = allocator
    }
}

/// Reads a stored body in pieces from its open file.
final class StoredBodyReader {
    /// One step of the read.
    enum Step {
        case piece(ByteBuffer)
        case end
        /// The file could not be read (the disk failed): the response is cut short.
        case failed
    }

    /// Bytes per piece: large enough to keep syscalls few, small enough to keep memory per stream bounded.
    static let pieceSize = 64 * 1024

    let file: CacheBodyFile?
    /// The whole body, when a memo keeps it (`CacheEntryMemo`): no read at all.
    private let memory: ByteBuffer?
    private var offset: Int64 = 0

    init(file: CacheBodyFile?, memory: ByteBuffer? = nil) {
        self.file = file
        self.memory = memory
    }

    /// No body (a HEAD's answer, a 304).
    static var empty: StoredBodyReader { StoredBodyReader(file: nil) }

    var isFinished: Bool { offset >= file?.bodySize ?? 0 }

    func nextPiece(allocator: ByteBufferAllocator) -> Step {
        guard let file, offset < file.bodySize else { return .end }
        if let memory, offset == 0, memory.readableBytes == file.bodySize {
            offset = file.bodySize
            return .piece(memory)
        }
        let wanted = Int(min(Int64(Self.pieceSize), file.bodySize - offset))
        var buffer = allocator.buffer(capacity: wanted)
        let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: wanted) { raw in
            max(0, file.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<wanted]), at: offset))
        }
        guard count > 0 else { return .failed }
        offset += Int64(count)
        return .piece(buffer)
    }
}

extension ExchangeUpstream {
    /// Whether the cache answered rather than a target of the pool (no target to count, retry or stick to).
    var isCacheAnswer: Bool { false }
}
