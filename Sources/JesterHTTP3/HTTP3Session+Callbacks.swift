// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGHTTP3

extension HTTP3Session {
    /// The callback table: every nghttp3 event this session turns into an `HTTP3Event` or a flow-control step.
    static func callbacks() -> nghttp3_callbacks {
        var callbacks = nghttp3_callbacks()
        callbacks.acked_stream_data = onBodyAcknowledged
        callbacks.stream_close = onStreamClose
        callbacks.recv_data = onData
        callbacks.deferred_consume = onDeferredConsume
        callbacks.begin_headers = onBeginHeaders
        callbacks.recv_header = onHeader
        callbacks.end_headers = onEndHeaders
        callbacks.begin_trailers = onBeginHeaders
        callbacks.recv_trailer = onHeader
        callbacks.end_trailers = onEndTrailers
        callbacks.stop_sending = onStopSendingRequested
        callbacks.end_stream = onEndStream
        callbacks.reset_stream = onResetRequested
        callbacks.shutdown = onGoAway
        return callbacks
    }

    /// The reader nghttp3 pulls a stream's outgoing body from (`readBody`).
    static var bodyReader: nghttp3_data_reader { nghttp3_data_reader(read_data: readBodyCallback) }
}

// MARK: Callbacks (C → Swift; never throw, always return 0 unless the connection must fail)

private let onBodyAcknowledged:
    @convention(c) (OpaquePointer?, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        count,
        user,
        _ in
        HTTP3Session.from(user).bodyAcknowledged(stream: stream, count: count)
        return 0
    }

private let onStreamClose:
    @convention(c) (OpaquePointer?, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        errorCode,
        user,
        _ in
        HTTP3Session.from(user).streamClosed(stream: stream, errorCode: errorCode)
        return 0
    }

private let onData:
    @convention(c) (
        OpaquePointer?, Int64, UnsafePointer<UInt8>?, Int, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32 = { _, stream, data, length, user, _ in
        HTTP3Session.from(user).data(stream: stream, UnsafeRawBufferPointer(start: data, count: length))
        return 0
    }

private let onDeferredConsume:
    @convention(c) (OpaquePointer?, Int64, Int, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        consumed,
        user,
        _ in
        // Bytes nghttp3 held while QPACK was blocked, now processed: framing, given back at once.
        HTTP3Session.from(user).connection.extendStreamLimits(stream: stream, count: consumed)
        return 0
    }

private let onBeginHeaders:
    @convention(c) (OpaquePointer?, Int64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        user,
        _ in
        HTTP3Session.from(user).beginSection(stream: stream)
        return 0
    }

private let onHeader:
    @convention(c) (
        OpaquePointer?, Int64, Int32, OpaquePointer?, OpaquePointer?, UInt8, UnsafeMutableRawPointer?,
        UnsafeMutableRawPointer?
    ) -> Int32 = { _, stream, _, name, value, flags, user, _ in
        let nameBuffer = nghttp3_rcbuf_get_buf(name)
        let valueBuffer = nghttp3_rcbuf_get_buf(value)
        HTTP3Session.from(user).field(
            stream: stream,
            name: UnsafeRawBufferPointer(start: nameBuffer.base, count: nameBuffer.len),
            value: UnsafeRawBufferPointer(start: valueBuffer.base, count: valueBuffer.len),
            flags: flags
        )
        return 0
    }

private let onEndHeaders:
    @convention(c) (OpaquePointer?, Int64, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        fin,
        user,
        _ in
        HTTP3Session.from(user).endSection(stream: stream, fin: fin != 0, isTrailers: false)
        return 0
    }

private let onEndTrailers:
    @convention(c) (OpaquePointer?, Int64, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        fin,
        user,
        _ in
        HTTP3Session.from(user).endSection(stream: stream, fin: fin != 0, isTrailers: true)
        return 0
    }

private let onStopSendingRequested:
    @convention(c) (OpaquePointer?, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        errorCode,
        user,
        _ in
        HTTP3Session.from(user).stopSendingRequested(stream: stream, errorCode: errorCode)
        return 0
    }

private let onEndStream:
    @convention(c) (OpaquePointer?, Int64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        user,
        _ in
        HTTP3Session.from(user).endOfStream(stream: stream)
        return 0
    }

private let onResetRequested:
    @convention(c) (OpaquePointer?, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        stream,
        errorCode,
        user,
        _ in
        HTTP3Session.from(user).resetRequested(stream: stream, errorCode: errorCode)
        return 0
    }

private let onGoAway: @convention(c) (OpaquePointer?, Int64, UnsafeMutableRawPointer?) -> Int32 = { _, id, user in
    HTTP3Session.from(user).goAwayReceived(id: id)
    return 0
}

private let readBodyCallback:
    @convention(c) (
        OpaquePointer?, Int64, UnsafeMutablePointer<nghttp3_vec>?, Int, UnsafeMutablePointer<UInt32>?,
        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int = { _, stream, vectors, capacity, flags, user, _ in
        guard let vectors, let flags else { return Int(NGHTTP3_ERR_CALLBACK_FAILURE) }
        return HTTP3Session.from(user).readBody(stream: stream, into: vectors, capacity: capacity, flags: flags)
    }
