// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

/// The stream-level protocol above a QUIC connection (HTTP/3): the connection hands it stream events from
/// ngtcp2's callbacks and asks it for stream data when it builds packets. Internal: C types cross it.
protocol QUICStreamApplication: AnyObject {
    /// 1-RTT keys are in place: open the streams the protocol needs. False fails the connection.
    func quicApplicationKeysReady() -> Bool
    /// Stream bytes arrived in order. False fails the connection (with `failApplication`'s code when set).
    func quicStreamData(stream: Int64, _ data: UnsafeRawBufferPointer, fin: Bool) -> Bool
    /// The peer acknowledged `count` more bytes of `stream`.
    func quicStreamDataAcknowledged(stream: Int64, count: UInt64) -> Bool
    /// The stream is gone both ways; `errorCode` is the application code when it was reset.
    func quicStreamClosed(stream: Int64, errorCode: UInt64?) -> Bool
    /// The peer reset its sending side (RESET_STREAM).
    func quicStreamReset(stream: Int64, errorCode: UInt64) -> Bool
    /// The peer asked this side to stop sending (STOP_SENDING).
    func quicStopSending(stream: Int64, errorCode: UInt64) -> Bool
    /// The peer raised the stream's flow-control limit: a blocked stream may write again.
    func quicStreamUnblocked(stream: Int64) -> Bool
    /// The peer may now open `maximum` bidirectional streams in all.
    func quicRemoteBidirectionalStreamsExtended(to maximum: UInt64)
    /// The next stream data to put in a packet: fills `vectors`, returns the stream (-1 for none), whether the
    /// data ends it, and how many vectors were filled; nil is a fatal error.
    func quicNextStreamData(
        _ vectors: UnsafeMutableBufferPointer<ngtcp2_vec>
    ) -> (stream: Int64, fin: Bool, count: Int)?
    /// `count` bytes of what `quicNextStreamData` offered for `stream` went into a packet.
    func quicStreamDataWritten(stream: Int64, count: Int) -> Bool
    /// The stream's flow-control limit stops it until `quicStreamUnblocked`.
    func quicStreamBlocked(stream: Int64)
    /// The stream's sending side is shut: it will not write again.
    func quicStreamWriteShut(stream: Int64)
}
