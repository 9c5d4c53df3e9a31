internal import CJesterNGHTTP3
internal import CJesterNGTCP2
// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// One HTTP/3 connection's protocol state on libnghttp3, over a `QUICConnection` it owns: datagrams go through
/// `connection` as before, and requests, responses and bodies are handled per stream here, with events like
/// `HTTP2Session`'s.
///
/// nghttp3 does the framing, QPACK and the messaging checks of RFC 9114 §4.1.2 (pseudo-header fields, content-
/// length against DATA, connection-specific fields): a request that fails them is reset with H3_MESSAGE_ERROR and
/// never reaches `takeEvents`. Flow control is manual: received body bytes are acknowledged with `consumed` only
/// once they were passed on, so a slow upstream slows the client instead of making Jester buffer. Outgoing bodies
/// are pulled from a per-stream queue; an empty queue says "not yet" until `sendBody` adds more. Used on one
/// thread.
public final class HTTP3Session {
    /// Which end this is; follows the connection's role.
    public typealias Role = QUICConnection.Role

    /// Limits advertised to the peer in SETTINGS (RFC 9114 §7.2.4, RFC 9204 §5).
    public struct Settings: Sendable, Equatable {
        /// The largest field section accepted (RFC 9114 §4.2.2: names and values plus 32 bytes per field); a
        /// larger one resets its stream with H3_EXCESSIVE_LOAD.
        public var maxFieldSectionSize: UInt64 = 16 * 1024
        /// QPACK's dynamic table capacity for the peer's encoder: memory held per connection for its fields.
        public var qpackMaxTableCapacity: Int = 4096
        /// Streams that may wait for QPACK encoder instructions at once; 0 forbids blocking.
        public var qpackBlockedStreams: Int = 16

        /// The defaults above.
        public init() {}
    }

    /// A stream's outgoing body: bytes copied into chunks that must stay put until the peer acknowledges them.
    private struct Outgoing {
        /// Chunks not yet handed to nghttp3.
        var queued = CircularBuffer<UnsafeMutableRawBufferPointer>()
        /// Chunks handed over and not yet wholly acknowledged, oldest first.
        var inFlight = CircularBuffer<UnsafeMutableRawBufferPointer>()
        /// Bytes of `inFlight.first` already acknowledged.
        var acknowledgedInFirst = 0
        var finished = false
        var trailers: [HTTP3Field] = []
        /// The reader said "not yet" (NGHTTP3_ERR_WOULDBLOCK): `sendBody` resumes it.
        var waiting = false
        /// Bytes queued or in flight and not yet acknowledged (kept as a sum: the adapter asks after every read).
        var bufferedBytes = 0

        func free() {
            for chunk in queued { chunk.deallocate() }
            for chunk in inFlight { chunk.deallocate() }
        }
    }

    /// The QUIC connection under this session: feed it datagrams and write what it gives.
    public let connection: QUICConnection
    /// Server (requests in, responses out) or client (the other way round).
    public let role: Role
    private let settings: Settings
    /// The nghttp3 connection (`nghttp3_conn *`), freed in deinit.
    var h3: OpaquePointer!
    private var events: [HTTP3Event] = []
    private var outgoing: [Int64: Outgoing] = [:]
    /// The field sections being received, by stream: a section whose QPACK decoding waits for the encoder
    /// stream (a blocked stream) has begun while another stream's section begins, ends or is refused.
    private var incomingSections: [Int64: IncomingSection] = [:]
    private struct IncomingSection {
        var fields: [HTTP3Field] = []
        /// RFC 9114 §4.2.2 size so far (fields past the limit are counted, not kept).
        var size: UInt64 = 0
    }
    /// Streams whose end was already reported (with their headers or trailers).
    var ended: Set<Int64> = []

    /// Puts HTTP/3 on `connection` (handshaking or just accepted). Throws when nghttp3 cannot start; the
    /// connection is then closing.
    public init(connection: QUICConnection, settings: Settings = Settings(), now: QUICInstant) throws(QUICError) {
        self.connection = connection
        role = connection.role
        self.settings = settings
        var callbacks = Self.callbacks()
        var h3Settings = nghttp3_settings()
        cjester_nghttp3_settings_default(&h3Settings)
        h3Settings.max_field_section_size = settings.maxFieldSectionSize
        h3Settings.qpack_max_dtable_capacity = settings.qpackMaxTableCapacity
        h3Settings.qpack_blocked_streams = settings.qpackBlockedStreams
        var created: OpaquePointer?
        let me = Unmanaged.passUnretained(self).toOpaque()
        let result =
            role == .server
            ? cjester_nghttp3_conn_server_new(&created, &callbacks, &h3Settings, me)
            : cjester_nghttp3_conn_client_new(&created, &callbacks, &h3Settings, me)
        guard result == 0, let created else {
            connection.close(applicationError: HTTP3ErrorCode.internalError, now: now)
            throw QUICError(
                .library,
                "nghttp3: cannot create a session",
                cause: String(cString: nghttp3_strerror(result))
            )
        }
        h3 = created
        guard connection.attach(self, now: now) else {
            throw QUICError(.connection, "HTTP/3 could not open its control streams")
        }
    }

    deinit {
        // ngtcp2 keeps pointers to unacknowledged body bytes for retransmission: the connection is discarded
        // before they are freed, in case its owner still holds it.
        connection.discard()
        for state in outgoing.values { state.free() }
        nghttp3_conn_del(h3)
    }

    /// What happened since the last call (after `connection.receive`, `handleExpiry` or `pendingDatagrams`).
    public func takeEvents() -> [HTTP3Event] {
        defer { events = [] }
        return events
    }

    // MARK: Requests and responses

    /// Submits a response head (server); with `hasBody`, its body follows through `sendBody` and `finishBody`.
    public func respond(stream: Int64, fields: [HTTP3Field], hasBody: Bool) throws(QUICError) {
        if hasBody { outgoing[stream] = Outgoing() }
        let result = withFieldList(fields) { list, count in
            var reader = Self.bodyReader
            return hasBody
                ? nghttp3_conn_submit_response(h3, stream, list, count, &reader)
                : nghttp3_conn_submit_response(h3, stream, list, count, nil)
        }
        guard result == 0 else {
            outgoing.removeValue(forKey: stream)?.free()
            throw QUICError(
                .invalidState,
                "cannot respond on stream \(stream)",
                cause: String(cString: nghttp3_strerror(result))
            )
        }
    }

    /// Submits an interim (1xx) response head (server) before the final one (RFC 9114 §4.1).
    public func respondInterim(stream: Int64, status: Int) {
        _ = withFieldList([HTTP3Field(":status", String(status))]) { list, count in
            nghttp3_conn_submit_info(h3, stream, list, count)
        }
    }

    /// Submits a request (client); returns its stream, or nil when no stream can be opened now (the peer's
    /// stream limit) or the session refuses (GOAWAY received).
    public func request(fields: [HTTP3Field], hasBody: Bool) -> Int64? {
        guard let stream = connection.openBidirectionalStream() else { return nil }
        if hasBody { outgoing[stream] = Outgoing() }
        let result = withFieldList(fields) { list, count in
            var reader = Self.bodyReader
            return hasBody
                ? nghttp3_conn_submit_request(h3, stream, list, count, &reader, nil)
                : nghttp3_conn_submit_request(h3, stream, list, count, nil, nil)
        }
        guard result == 0 else {
            outgoing.removeValue(forKey: stream)?.free()
            connection.shutdownStream(stream, errorCode: HTTP3ErrorCode.requestCancelled)
            return nil
        }
        return stream
    }

    /// Adds body bytes to a stream's outgoing body (copied; the caller may reuse `bytes`).
    public func sendBody(stream: Int64, _ bytes: ByteBuffer) {
        guard var state = outgoing[stream], !state.finished, bytes.readableBytes > 0 else { return }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.readableBytes, alignment: 1)
        bytes.withUnsafeReadableBytes { chunk.copyMemory(from: $0) }
        state.queued.append(chunk)
        state.bufferedBytes += chunk.count
        resume(stream, &state)
    }

    /// Ends a stream's outgoing body, with trailers when given (gRPC's status travels in them).
    public func finishBody(stream: Int64, trailers: [HTTP3Field] = []) {
        guard var state = outgoing[stream], !state.finished else { return }
        state.finished = true
        state.trailers = trailers
        resume(stream, &state)
    }

    /// Bytes of a stream's outgoing body not yet acknowledged by the peer: what it holds in memory, for
    /// backpressure (stop reading the upstream above a threshold, resume below).
    public func bufferedBody(stream: Int64) -> Int {
        outgoing[stream]?.bufferedBytes ?? 0
    }

    /// Received body bytes of `stream` were passed on: the peer may send that many more.
    public func consumed(stream: Int64, count: Int) {
        connection.extendStreamLimits(stream: stream, count: count)
    }

    /// Abandons a stream both ways (RESET_STREAM and STOP_SENDING) with an HTTP/3 error code: H3_REQUEST_CANCELLED
    /// when the other side went away, H3_INTERNAL_ERROR when the body's source failed midway.
    public func reset(stream: Int64, errorCode: UInt64) {
        connection.shutdownStream(stream, errorCode: errorCode)
    }

    /// Starts a graceful shutdown (RFC 9114 §5.2): a GOAWAY that still admits requests in flight, to be followed
    /// by `goAway()` once the client had a round trip to notice.
    public func announceShutdown() {
        // (GOAWAY travels on the control stream, which exists once the handshake installed 1-RTT keys: nghttp3
        // asserts it. Before that there is nothing to announce; the caller closes such a connection.)
        guard controlStreamBound else { return }
        _ = nghttp3_conn_submit_shutdown_notice(h3)
    }

    /// The final GOAWAY: requests on streams above the last one accepted will not be served.
    public func goAway() {
        guard controlStreamBound else { return }
        _ = nghttp3_conn_shutdown(h3)
    }

    /// Whether the session's control and QPACK streams are open (after the handshake): only then can it send
    /// GOAWAY or serve requests.
    public internal(set) var controlStreamBound = false

    // MARK: Internals

    private func resume(_ stream: Int64, _ state: inout Outgoing) {
        let wasWaiting = state.waiting
        state.waiting = false
        outgoing[stream] = state
        if wasWaiting { _ = nghttp3_conn_resume_stream(h3, stream) }
    }

    /// Calls `body` with an nghttp3 field list over the fields' UTF-8 bytes (nghttp3 copies it before returning).
    private func withFieldList<T>(_ fields: [HTTP3Field], _ body: (UnsafePointer<nghttp3_nv>, Int) -> T) -> T {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count })
        for field in fields {
            bytes.append(contentsOf: field.name.utf8)
            bytes.append(contentsOf: field.value.utf8)
        }
        return withUnsafeTemporaryAllocation(of: nghttp3_nv.self, capacity: max(fields.count, 1)) { list in
            bytes.withUnsafeMutableBufferPointer { storage in
                var offset = 0
                for (index, field) in fields.enumerated() {
                    let name = field.name.utf8.count
                    let value = field.value.utf8.count
                    let base = storage.baseAddress.map { $0 + offset }
                    list.initializeElement(
                        at: index,
                        to: nghttp3_nv(
                            name: base,
                            value: base.map { $0 + name },
                            namelen: name,
                            valuelen: value,
                            flags: field.neverIndexed ? UInt8(NGHTTP3_NV_FLAG_NEVER_INDEX) : 0
                        )
                    )
                    offset += name + value
                }
                return body(UnsafePointer(list.baseAddress!), fields.count)
            }
        }
    }

    /// The session a C callback's user data points at (unretained: the session outlives its nghttp3 connection).
    static func from(_ user: UnsafeMutableRawPointer?) -> HTTP3Session {
        Unmanaged<HTTP3Session>.fromOpaque(user!).takeUnretainedValue()
    }

    // MARK: nghttp3 callback targets

    /// A field section (head or trailers) starts on `stream`.
    func beginSection(stream: Int64) {
        incomingSections[stream] = IncomingSection()
    }

    /// One field of the section being received; counted against `maxFieldSectionSize`, kept while under it.
    func field(stream: Int64, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt8) {
        guard let size = incomingSections[stream]?.size else { return }
        // RFC 9114 §4.2.2: a field's size is its name and value plus 32 bytes.
        let grown = size + UInt64(name.count + value.count + 32)
        incomingSections[stream]!.size = grown
        guard grown <= settings.maxFieldSectionSize else { return }
        incomingSections[stream]!.fields.append(
            HTTP3Field(
                String(decoding: name, as: UTF8.self),
                String(decoding: value, as: UTF8.self),
                neverIndexed: flags & UInt8(NGHTTP3_NV_FLAG_NEVER_INDEX) != 0
            )
        )
    }

    /// A field section ended: a head, or (`isTrailers`) trailers. False when it was over the limit and the
    /// stream was refused.
    func endSection(stream: Int64, fin: Bool, isTrailers: Bool) {
        let section = incomingSections.removeValue(forKey: stream) ?? IncomingSection()
        let fields = section.fields
        guard section.size <= settings.maxFieldSectionSize else {
            refuse(stream: stream, errorCode: HTTP3ErrorCode.excessiveLoad)
            return
        }
        if isTrailers {
            ended.insert(stream)
            events.append(.trailers(stream: stream, fields: fields))
            return
        }
        if fin { ended.insert(stream) }
        events.append(.headers(stream: stream, fields: fields, endStream: fin))
    }

    /// Refuses a stream the session will not serve: both directions shut, the caller told once.
    func refuse(stream: Int64, errorCode: UInt64) {
        ended.insert(stream)
        connection.shutdownStream(stream, errorCode: errorCode)
        events.append(.streamReset(stream: stream, errorCode: errorCode))
    }

    /// Body bytes of `stream`, reported unless the stream was refused.
    func data(stream: Int64, _ bytes: UnsafeRawBufferPointer) {
        guard !ended.contains(stream) else {
            // A refused stream's late body: give its credit back so the connection's window does not shrink.
            connection.extendStreamLimits(stream: stream, count: bytes.count)
            return
        }
        events.append(.data(stream: stream, ByteBuffer(bytes: bytes)))
    }

    /// The peer finished sending on `stream`; reported once, unless a head or trailers already said so.
    func endOfStream(stream: Int64) {
        guard ended.insert(stream).inserted else { return }
        events.append(.endStream(stream: stream))
    }

    /// nghttp3 forgot the stream: its outgoing body is freed and the caller told.
    func streamClosed(stream: Int64, errorCode: UInt64) {
        outgoing.removeValue(forKey: stream)?.free()
        ended.remove(stream)
        incomingSections[stream] = nil
        // The client may open another request stream in its place (server role; client streams are 0 mod 4).
        if role == .server, stream & 0x3 == 0 { connection.extendRemoteBidirectionalStreams(by: 1) }
        events.append(.streamClosed(stream: stream, errorCode: errorCode))
    }

    /// The peer acknowledged `count` more body bytes: whole chunks are freed.
    func bodyAcknowledged(stream: Int64, count: UInt64) {
        guard var state = outgoing[stream] else { return }
        var remaining = Int(count)
        state.bufferedBytes -= remaining
        while remaining > 0, let first = state.inFlight.first {
            let left = first.count - state.acknowledgedInFirst
            if remaining >= left {
                remaining -= left
                first.deallocate()
                state.inFlight.removeFirst()
                state.acknowledgedInFirst = 0
            } else {
                state.acknowledgedInFirst += remaining
                remaining = 0
            }
        }
        outgoing[stream] = state
    }

    /// Fills nghttp3's vectors from a stream's outgoing body: the number filled, or NGHTTP3_ERR_WOULDBLOCK.
    func readBody(
        stream: Int64,
        into vectors: UnsafeMutablePointer<nghttp3_vec>,
        capacity: Int,
        flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        guard var state = outgoing[stream] else { return Int(NGHTTP3_ERR_CALLBACK_FAILURE) }
        var count = 0
        while count < capacity, !state.queued.isEmpty {
            let chunk = state.queued.removeFirst()
            vectors[count] = nghttp3_vec(base: chunk.baseAddress!.assumingMemoryBound(to: UInt8.self), len: chunk.count)
            state.inFlight.append(chunk)
            count += 1
        }
        if state.queued.isEmpty, state.finished {
            flags.pointee |= UInt32(NGHTTP3_DATA_FLAG_EOF)
            if !state.trailers.isEmpty {
                flags.pointee |= UInt32(NGHTTP3_DATA_FLAG_NO_END_STREAM)
                let trailers = state.trailers
                state.trailers = []
                outgoing[stream] = state
                let result = withFieldList(trailers) { list, n in nghttp3_conn_submit_trailers(h3, stream, list, n) }
                return result == 0 ? count : Int(NGHTTP3_ERR_CALLBACK_FAILURE)
            }
        } else if count == 0 {
            state.waiting = true
            outgoing[stream] = state
            return Int(NGHTTP3_ERR_WOULDBLOCK)
        }
        outgoing[stream] = state
        return count
    }

    /// The peer sent GOAWAY with `id`.
    func goAwayReceived(id: Int64) {
        events.append(.goAway(id: id))
    }

    /// The peer reset the stream or asked this side to stop: the caller is told once.
    func peerAbandoned(stream: Int64, errorCode: UInt64) {
        guard ended.insert(stream).inserted else { return }
        events.append(.streamReset(stream: stream, errorCode: errorCode))
    }

    /// nghttp3 asks for a stream's sending side to be reset (a malformed message, an unwanted push).
    func resetRequested(stream: Int64, errorCode: UInt64) {
        connection.shutdownStreamWrite(stream, errorCode: errorCode)
        if ended.insert(stream).inserted { events.append(.streamReset(stream: stream, errorCode: errorCode)) }
    }

    /// nghttp3 asks for the stream's reading side to be stopped (STOP_SENDING).
    func stopSendingRequested(stream: Int64, errorCode: UInt64) {
        connection.shutdownStreamRead(stream, errorCode: errorCode)
    }
}
