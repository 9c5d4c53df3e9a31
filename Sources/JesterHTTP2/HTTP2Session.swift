// SPDX-License-Identifier: Apache-2.0
import NIOCore
private import CJesterNGHTTP2

/// A header field of an HTTP/2 message (names are lowercase on the wire, RFC 9113 §8.2.1).
public struct HTTP2Field: Sendable, Equatable {
    public var name: String
    public var value: String
    /// Sent as a never-indexed literal (RFC 7541 §6.2.3): for values unique to one message (a request id), which
    /// HPACK's dynamic table would only churn through, evicting the fields that do repeat.
    public var neverIndexed: Bool

    public init(_ name: String, _ value: String, neverIndexed: Bool = false) {
        self.name = name
        self.value = value
        self.neverIndexed = neverIndexed
    }
}

/// What an HTTP/2 session received, in order.
public enum HTTP2Event: Sendable, Equatable {
    /// The first header block of a stream: a request (server) or a response (client). `endStream`: no body.
    case headers(stream: Int32, fields: [HTTP2Field], endStream: Bool)
    /// Body bytes.
    case data(stream: Int32, ByteBuffer)
    /// The body ended (END_STREAM on a DATA frame).
    case endStream(stream: Int32)
    /// A trailer block; it ends the stream.
    case trailers(stream: Int32, fields: [HTTP2Field])
    /// The stream is gone: finished both ways, or reset (`errorCode` not 0).
    case streamClosed(stream: Int32, errorCode: UInt32)
    /// The peer will open no stream above `lastStream`.
    case goAway(lastStream: Int32, errorCode: UInt32)
}

/// A connection-level failure: the session sent GOAWAY (when it could) and is finished.
public struct HTTP2Error: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// One HTTP/2 connection's protocol state, on libnghttp2: bytes from the peer go in with `receive`, bytes for the
/// peer come out of `takeOutput`, and requests, responses and bodies are submitted per stream.
///
/// nghttp2 does the framing, HPACK, flow control, stream states and the HTTP messaging checks of RFC 9113 §8
/// (pseudo-headers, connection-specific fields, content-length against DATA, uppercase names): a request that
/// fails them is reset by the library and never reaches `receive`'s caller. Flow control is manual: received body
/// bytes are acknowledged with `consumed` only once they were passed on, so a slow upstream slows the client
/// instead of making Jester buffer. Outgoing bodies are pulled from a per-stream buffer; an empty buffer defers
/// the stream until `sendBody` adds more. Used on one event loop.
public final class HTTP2Session {
    public enum Role: Sendable { case server, client }

    /// Limits advertised to the peer.
    public struct Settings: Sendable {
        public var maxConcurrentStreams: UInt32 = 128
        /// The receive window per stream: how much request body may be in flight before the peer waits.
        public var initialWindowSize: UInt32 = 65_535
        /// The largest header list accepted (uncompressed, RFC 9113 §6.5.2).
        public var maxHeaderListSize: UInt32 = 16 * 1024

        public init() {}
    }

    /// The state of a stream's outgoing body.
    private struct Outgoing {
        var buffer: ByteBuffer?
        var finished = false
        var trailers: [HTTP2Field] = []
        var deferred = false
        /// The body will not be completed (`abortBody`): once what is buffered went out, the stream is reset.
        var aborted = false
    }

    private var session: OpaquePointer?
    private let role: Role
    private var events: [HTTP2Event] = []
    /// The header block being received and its stream: a block (HEADERS and its CONTINUATIONs) is never
    /// interleaved with another stream's frames (RFC 9113 §6.10), so one is enough.
    private var incomingStream: Int32 = 0
    private var incoming: [HTTP2Field] = []
    private var outgoing: [Int32: Outgoing] = [:]
    /// Streams (client role) whose interim (1xx) response came: nghttp2 files the final head that follows under
    /// the HEADERS category, as it does trailers, so the session remembers that it is a response.
    private var awaitingFinalResponse: Set<Int32> = []
    /// The client's stream identifiers so far (server role), to refuse a skipped one (see `ClientStreamIDs`).
    private var clientStreamIDs = ClientStreamIDs()

    public init(role: Role, settings: Settings = Settings()) throws(HTTP2Error) {
        self.role = role
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else {
            throw HTTP2Error(description: "nghttp2: out of memory")
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, onBeginFrame)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        // Window updates follow what was passed on (see `consumed`), not what arrived.
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_max_send_header_block_length(option, 64 * 1024)
        let me = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        let result = role == .server
            ? nghttp2_session_server_new2(&created, callbacks, me, option)
            : nghttp2_session_client_new2(&created, callbacks, me, option)
        guard result == 0, let created else { throw HTTP2Error(description: "nghttp2: cannot create a session") }
        session = created
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: settings.maxHeaderListSize),
        ]
        if role == .server {
            // No server push (RFC 9113 §8.4 lets only the client enable it; a proxy has nothing to push).
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
        }
        nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
    }

    deinit {
        nghttp2_session_del(session)
    }

    // MARK: Input

    /// Processes bytes from the peer and returns what they carried; an error means the connection must close
    /// after the output (a GOAWAY, usually) is written.
    public func receive(_ bytes: ByteBuffer) -> Result<[HTTP2Event], HTTP2Error> {
        let result = bytes.withUnsafeReadableBytes { raw in
            nghttp2_session_mem_recv(session, raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
        }
        let received = events
        events = []
        if result < 0 {
            return .failure(HTTP2Error(description: String(cString: nghttp2_strerror(Int32(result)))))
        }
        return .success(received)
    }

    // MARK: Output

    /// Frames waiting to be sent, or nil when there are none.
    public func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        var output: ByteBuffer?
        while true {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &data)
            guard count > 0, let data else { break }
            if output == nil { output = allocator.buffer(capacity: Int(count)) }
            output!.writeBytes(UnsafeRawBufferPointer(start: data, count: Int(count)))
        }
        return output
    }

    /// Events raised while output was produced: a stream whose last frame went out after the peer's is closed by
    /// `takeOutput`, not by `receive`. Call after `takeOutput`; waiting for the peer's next bytes would leave the
    /// stream open (and the connection not idle) for as long as the peer stays quiet.
    public func takeEvents() -> [HTTP2Event] {
        guard !events.isEmpty else { return [] }
        let taken = events
        events = []
        return taken
    }

    /// Whether the session still wants to read or write; when neither, the connection can close.
    public var isActive: Bool {
        nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0
    }

    /// The bytes of header fields this side's HPACK encoder remembers (its dynamic table): what never-indexed
    /// fields stay out of.
    public var encoderTableSize: Int {
        Int(nghttp2_session_get_hd_deflate_dynamic_table_size(session))
    }

    // MARK: Streams

    /// Submits a response head (server); with `hasBody`, its body follows through `sendBody` and `finishBody`.
    public func respond(stream: Int32, fields: [HTTP2Field], hasBody: Bool) {
        respond(stream: stream, headers: HTTP2HeaderBlock(fields), hasBody: hasBody)
    }

    /// Submits a response head (server) built as a block; with `hasBody`, its body follows through `sendBody` and
    /// `finishBody`.
    public func respond(stream: Int32, headers: HTTP2HeaderBlock, hasBody: Bool) {
        if hasBody { outgoing[stream] = Outgoing() }
        withHeaderList(headers) { list, count in
            if hasBody {
                var provider = bodyProvider()
                _ = nghttp2_submit_response(session, stream, list, count, &provider)
            } else {
                _ = nghttp2_submit_response(session, stream, list, count, nil)
            }
        }
    }

    /// Submits an interim (1xx) response head (server) before the final one (RFC 9113 §8.1): a client that sent
    /// `expect: 100-continue` holds its body back until a 100 comes, or until it tires of waiting (RFC 9110 §10.1.1).
    public func respondInterim(stream: Int32, status: Int) {
        withHeaderList(HTTP2HeaderBlock([HTTP2Field(":status", String(status))])) { list, count in
            _ = nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, nil, list, count, nil)
        }
    }

    /// Submits a request (client); returns its stream, or nil when the session refuses (GOAWAY received).
    public func request(fields: [HTTP2Field], hasBody: Bool) -> Int32? {
        let stream = withHeaderList(HTTP2HeaderBlock(fields)) { list, count in
            if hasBody {
                var provider = bodyProvider()
                return nghttp2_submit_request(session, nil, list, count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, list, count, nil, nil)
        }
        guard stream > 0 else { return nil }
        if hasBody { outgoing[stream] = Outgoing() }
        return stream
    }

    /// Adds body bytes to a stream's outgoing body.
    public func sendBody(stream: Int32, _ bytes: ByteBuffer) {
        guard var state = outgoing[stream], !state.finished else { return }
        var bytes = bytes
        if state.buffer == nil { state.buffer = bytes } else { state.buffer!.writeBuffer(&bytes) }
        resume(stream, &state)
    }

    /// Ends a stream's outgoing body, with trailers when given (gRPC's status travels in them).
    public func finishBody(stream: Int32, trailers: [HTTP2Field] = []) {
        guard var state = outgoing[stream], !state.finished else { return }
        state.finished = true
        state.trailers = trailers
        resume(stream, &state)
    }

    /// Bytes of a stream's outgoing body not yet framed (waiting for the peer's window): for backpressure.
    public func bufferedBody(stream: Int32) -> Int {
        outgoing[stream]?.buffer?.readableBytes ?? 0
    }

    /// The stream's body will not be completed (its source failed midway): the head and the body bytes already
    /// handed over still go out, then the stream is reset with INTERNAL_ERROR, so the peer sees what came and that
    /// it is incomplete. (A plain `reset` now would drop the queued frames: a peer would see a bare reset.) A
    /// stream with no body under way is reset at once.
    public func abortBody(stream: Int32) {
        guard var state = outgoing[stream], !state.finished else {
            reset(stream: stream, errorCode: 2)
            return
        }
        state.aborted = true
        resume(stream, &state)
    }

    /// Resets a stream (RST_STREAM): INTERNAL_ERROR 2, REFUSED_STREAM 7, CANCEL 8.
    public func reset(stream: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// Received body bytes of `stream` were passed on: the peer may send that many more.
    public func consumed(stream: Int32, count: Int) {
        guard count > 0 else { return }
        _ = nghttp2_session_consume(session, stream, count)
    }

    /// Starts a graceful shutdown (RFC 9113 §6.8): a GOAWAY that still admits streams in flight, to be followed by
    /// `goAway()` once the peer had a round trip to notice.
    public func announceShutdown() {
        _ = nghttp2_submit_shutdown_notice(session)
    }

    /// The final GOAWAY: streams above the last one processed will not be served.
    public func goAway(errorCode: UInt32 = 0) {
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
            nghttp2_session_get_last_proc_stream_id(session), errorCode, nil, 0)
    }

    // MARK: Internals

    private func resume(_ stream: Int32, _ state: inout Outgoing) {
        let wasDeferred = state.deferred
        state.deferred = false
        outgoing[stream] = state
        if wasDeferred { _ = nghttp2_session_resume_data(session, stream) }
    }

    private func bodyProvider() -> nghttp2_data_provider {
        var provider = nghttp2_data_provider()
        provider.read_callback = readBodyCallback
        return provider
    }

    /// Calls `body` with an nghttp2 header list pointing into `block` (nghttp2 copies it before returning); the
    /// list itself lives on the stack.
    private func withHeaderList<T>(_ block: HTTP2HeaderBlock, _ body: (UnsafePointer<nghttp2_nv>, Int) -> T) -> T {
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(block.count, 1)) { list in
            block.bytes.withUnsafeBufferPointer { bytes in
                // (No bytes at all: only an empty block, or nameless fields nghttp2 would refuse anyway.)
                guard let base = bytes.baseAddress.map(UnsafeMutablePointer.init(mutating:)) else {
                    return body(UnsafePointer(list.baseAddress!), 0)
                }
                for (index, span) in block.spans.enumerated() {
                    list.initializeElement(at: index, to: nghttp2_nv(
                        name: base + span.start, value: base + span.start + span.nameLength, namelen: span.nameLength,
                        valuelen: span.valueLength,
                        flags: UInt8((span.neverIndexed ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE).rawValue)))
                }
                return body(UnsafePointer(list.baseAddress!), block.count)
            }
        }
    }

    fileprivate static func from(_ user: UnsafeMutableRawPointer?) -> HTTP2Session {
        Unmanaged<HTTP2Session>.fromOpaque(user!).takeUnretainedValue()
    }

    /// Every frame's header, before nghttp2 acts on it. nghttp2 1.52 ignores HEADERS on a lower, unused stream
    /// identifier (it cannot tell one from trailers racing our RST_STREAM); RFC 9113 §5.1.1 makes a skipped one a
    /// connection error, and no race explains it, so the session ends with PROTOCOL_ERROR.
    fileprivate func frameBegins(type: UInt8, stream: Int32) {
        guard role == .server, UInt32(type) == NGHTTP2_HEADERS.rawValue, stream & 1 == 1 else { return }
        if !clientStreamIDs.headersArrived(on: stream) {
            _ = nghttp2_session_terminate_session(session, UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue))
        }
    }

    fileprivate func beginHeaders(stream: Int32) {
        incomingStream = stream
        incoming = []
        incoming.reserveCapacity(8)
    }

    /// `neverIndexed`: the peer sent it so; a proxy passing it on must too (RFC 7541 §6.2.3).
    fileprivate func header(
        stream: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, neverIndexed: Bool
    ) {
        guard stream == incomingStream else { return }
        incoming.append(HTTP2Field(
            String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self), neverIndexed: neverIndexed))
    }

    fileprivate func frameReceived(type: UInt8, flags: UInt8, stream: Int32, category: UInt32, lastStream: Int32,
        errorCode: UInt32)
    {
        let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(type) {
        case NGHTTP2_HEADERS.rawValue:
            var fields: [HTTP2Field] = []
            if stream == incomingStream {
                swap(&fields, &incoming)
                incomingStream = 0
            }
            let first = role == .server ? NGHTTP2_HCAT_REQUEST.rawValue : NGHTTP2_HCAT_RESPONSE.rawValue
            if category == first || awaitingFinalResponse.remove(stream) != nil {
                // An interim (1xx) response is reported like any head (its reader waits on for the final one).
                if role == .client, let status = fields.first, status.name == ":status",
                    status.value.utf8.first == UInt8(ascii: "1")
                {
                    awaitingFinalResponse.insert(stream)
                }
                events.append(.headers(stream: stream, fields: fields, endStream: endStream))
            } else if endStream {
                events.append(.trailers(stream: stream, fields: fields))
            }
        case NGHTTP2_DATA.rawValue:
            if endStream { events.append(.endStream(stream: stream)) }
        case NGHTTP2_GOAWAY.rawValue:
            events.append(.goAway(lastStream: lastStream, errorCode: errorCode))
        default:
            break
        }
    }

    fileprivate func dataChunk(stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        events.append(.data(stream: stream, ByteBuffer(bytes: bytes)))
    }

    fileprivate func streamClosed(stream: Int32, errorCode: UInt32) {
        outgoing[stream] = nil
        if !awaitingFinalResponse.isEmpty { awaitingFinalResponse.remove(stream) }
        if stream == incomingStream {
            incomingStream = 0
            incoming = []
        }
        events.append(.streamClosed(stream: stream, errorCode: errorCode))
    }

    /// Fills nghttp2's frame buffer from a stream's outgoing body.
    fileprivate func readBody(stream: Int32, into target: UnsafeMutablePointer<UInt8>, length: Int,
        flags: UnsafeMutablePointer<UInt32>) -> Int
    {
        guard var state = outgoing[stream] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        var copied = 0
        if var buffer = state.buffer, buffer.readableBytes > 0 {
            copied = min(length, buffer.readableBytes)
            buffer.withUnsafeReadableBytes { source in
                target.update(from: source.bindMemory(to: UInt8.self).baseAddress!, count: copied)
            }
            buffer.moveReaderIndex(forwardBy: copied)
            state.buffer = buffer.readableBytes > 0 ? buffer : nil
        }
        if state.buffer == nil, state.finished {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if !state.trailers.isEmpty {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                withHeaderList(HTTP2HeaderBlock(state.trailers)) { list, count in _ = nghttp2_submit_trailer(session, stream, list, count) }
            }
        } else if copied == 0, state.aborted {
            // Everything handed over went out: nghttp2 resets the stream with INTERNAL_ERROR.
            outgoing[stream] = state
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        } else if copied == 0 {
            state.deferred = true
            outgoing[stream] = state
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        outgoing[stream] = state
        return copied
    }
}

// MARK: Callbacks (C → Swift; never throw, always return 0 unless the session must fail)

private let onBeginFrame: @convention(c) (OpaquePointer?, UnsafePointer<nghttp2_frame_hd>?, UnsafeMutableRawPointer?) -> Int32 = {
    _, header, user in
    guard let header else { return 0 }
    HTTP2Session.from(user).frameBegins(type: header.pointee.type, stream: header.pointee.stream_id)
    return 0
}

private let onBeginHeaders: @convention(c) (OpaquePointer?, UnsafePointer<nghttp2_frame>?, UnsafeMutableRawPointer?) -> Int32 = {
    _, frame, user in
    guard let frame else { return 0 }
    HTTP2Session.from(user).beginHeaders(stream: frame.pointee.hd.stream_id)
    return 0
}

private let onHeader: @convention(c) (
    OpaquePointer?, UnsafePointer<nghttp2_frame>?, UnsafePointer<UInt8>?, Int, UnsafePointer<UInt8>?, Int, UInt8,
    UnsafeMutableRawPointer?
) -> Int32 = { _, frame, name, nameLength, value, valueLength, flags, user in
    guard let frame else { return 0 }
    HTTP2Session.from(user).header(
        stream: frame.pointee.hd.stream_id, name: UnsafeBufferPointer(start: name, count: nameLength),
        value: UnsafeBufferPointer(start: value, count: valueLength),
        neverIndexed: flags & UInt8(NGHTTP2_NV_FLAG_NO_INDEX.rawValue) != 0)
    return 0
}

private let onFrameReceived: @convention(c) (OpaquePointer?, UnsafePointer<nghttp2_frame>?, UnsafeMutableRawPointer?) -> Int32 = {
    _, frame, user in
    guard let frame else { return 0 }
    let header = frame.pointee.hd
    let isGoAway = UInt32(header.type) == NGHTTP2_GOAWAY.rawValue
    HTTP2Session.from(user).frameReceived(
        type: header.type, flags: header.flags, stream: header.stream_id,
        category: UInt32(header.type) == NGHTTP2_HEADERS.rawValue ? frame.pointee.headers.cat.rawValue : 0,
        lastStream: isGoAway ? frame.pointee.goaway.last_stream_id : 0,
        errorCode: isGoAway ? frame.pointee.goaway.error_code : 0)
    return 0
}

private let onDataChunk: @convention(c) (OpaquePointer?, UInt8, Int32, UnsafePointer<UInt8>?, Int, UnsafeMutableRawPointer?) -> Int32 = {
    _, _, stream, data, length, user in
    HTTP2Session.from(user).dataChunk(stream: stream, UnsafeRawBufferPointer(start: data, count: length))
    return 0
}

private let onStreamClose: @convention(c) (OpaquePointer?, Int32, UInt32, UnsafeMutableRawPointer?) -> Int32 = {
    _, stream, errorCode, user in
    HTTP2Session.from(user).streamClosed(stream: stream, errorCode: errorCode)
    return 0
}

private let readBodyCallback: @convention(c) (
    OpaquePointer?, Int32, UnsafeMutablePointer<UInt8>?, Int, UnsafeMutablePointer<UInt32>?,
    UnsafeMutablePointer<nghttp2_data_source>?, UnsafeMutableRawPointer?
) -> Int = { _, stream, buffer, length, flags, _, user in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
    return HTTP2Session.from(user).readBody(stream: stream, into: buffer, length: length, flags: flags)
}
