// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGHTTP3
internal import CJesterNGTCP2

// MARK: QUIC stream events → nghttp3
//
// Each method implements the QUICStreamApplication requirement of the same name (documented there) by handing
// the event to nghttp3, the way ngtcp2's examples/server.cc pairs the two libraries.

extension HTTP3Session: QUICStreamApplication {
    func quicApplicationKeysReady() -> Bool {
        if role == .server {
            nghttp3_conn_set_max_client_streams_bidi(h3, connection.localMaximumBidirectionalStreams)
        }
        // RFC 9114 §6.2: each side opens a control stream and, for QPACK, an encoder and a decoder stream.
        guard connection.peerAllowedUnidirectionalStreams >= 3,
            let control = connection.openUnidirectionalStream(),
            let encoder = connection.openUnidirectionalStream(),
            let decoder = connection.openUnidirectionalStream()
        else {
            connection.failApplication(
                code: HTTP3ErrorCode.generalProtocolError,
                reason: "too few unidirectional streams"
            )
            return false
        }
        controlStreamBound = nghttp3_conn_bind_control_stream(h3, control) == 0
            && nghttp3_conn_bind_qpack_streams(h3, encoder, decoder) == 0
        return controlStreamBound
    }

    func quicStreamData(stream: Int64, _ data: UnsafeRawBufferPointer, fin: Bool) -> Bool {
        let consumed = nghttp3_conn_read_stream(
            h3,
            stream,
            data.baseAddress?.assumingMemoryBound(to: UInt8.self),
            data.count,
            fin ? 1 : 0
        )
        // A body that contradicts its content-length (or arrives after the declared end): nghttp3 0.8 reports it as
        // a connection error, but RFC 9114 §4.1.2 makes it a stream error, and one bad request must not end the
        // others on the connection.
        if consumed == NGHTTP3_ERR_MALFORMED_HTTP_MESSAGING, stream & 0x2 == 0 {
            _ = nghttp3_conn_shutdown_stream_read(h3, stream)
            connection.extendStreamLimits(stream: stream, count: data.count)
            if !ended.contains(stream) { refuse(stream: stream, errorCode: HTTP3ErrorCode.messageError) }
            return true
        }
        guard consumed >= 0 else {
            connection.failApplication(
                code: nghttp3_err_infer_quic_app_error_code(Int32(consumed)),
                reason: String(cString: nghttp3_strerror(Int32(consumed)))
            )
            return false
        }
        // Framing, and body bytes of streams nghttp3 discards: given back now. Delivered body waits for `consumed`.
        connection.extendStreamLimits(stream: stream, count: consumed)
        return true
    }

    func quicStreamDataAcknowledged(stream: Int64, count: UInt64) -> Bool {
        nghttp3_conn_add_ack_offset(h3, stream, count) == 0
    }

    func quicStreamClosed(stream: Int64, errorCode: UInt64?) -> Bool {
        let result = nghttp3_conn_close_stream(h3, stream, errorCode ?? HTTP3ErrorCode.noError)
        if result == 0 || result == NGHTTP3_ERR_STREAM_NOT_FOUND { return true }
        connection.failApplication(
            code: nghttp3_err_infer_quic_app_error_code(result),
            reason: String(cString: nghttp3_strerror(result))
        )
        return false
    }

    func quicStreamReset(stream: Int64, errorCode: UInt64) -> Bool {
        peerAbandoned(stream: stream, errorCode: errorCode)
        return nghttp3_conn_shutdown_stream_read(h3, stream) == 0
    }

    func quicStopSending(stream: Int64, errorCode: UInt64) -> Bool {
        peerAbandoned(stream: stream, errorCode: errorCode)
        return nghttp3_conn_shutdown_stream_read(h3, stream) == 0
    }

    func quicStreamUnblocked(stream: Int64) -> Bool {
        nghttp3_conn_unblock_stream(h3, stream) == 0
    }

    func quicRemoteBidirectionalStreamsExtended(to maximum: UInt64) {
        nghttp3_conn_set_max_client_streams_bidi(h3, maximum)
    }

    func quicNextStreamData(
        _ vectors: UnsafeMutableBufferPointer<ngtcp2_vec>
    ) -> (stream: Int64, fin: Bool, count: Int)? {
        var stream: Int64 = -1
        var fin: Int32 = 0
        // nghttp3_vec and ngtcp2_vec have the same layout (a pointer and a length), as ngtcp2's examples rely on.
        let count = vectors.withMemoryRebound(to: nghttp3_vec.self) { h3Vectors in
            nghttp3_conn_writev_stream(h3, &stream, &fin, h3Vectors.baseAddress, h3Vectors.count)
        }
        guard count >= 0 else {
            connection.failApplication(
                code: nghttp3_err_infer_quic_app_error_code(Int32(count)),
                reason: String(cString: nghttp3_strerror(Int32(count)))
            )
            return nil
        }
        return (stream, fin != 0, count)
    }

    func quicStreamDataWritten(stream: Int64, count: Int) -> Bool {
        guard stream >= 0 else { return true }
        return nghttp3_conn_add_write_offset(h3, stream, count) == 0
    }

    func quicStreamBlocked(stream: Int64) {
        nghttp3_conn_block_stream(h3, stream)
    }

    func quicStreamWriteShut(stream: Int64) {
        nghttp3_conn_shutdown_stream_write(h3, stream)
    }
}
