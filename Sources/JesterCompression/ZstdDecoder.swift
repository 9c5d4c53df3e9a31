// SPDX-License-Identifier: Apache-2.0
private import CJesterZstd
import JesterCore
import NIOCore

/// The zstd decoder, over libzstd's streaming interface (`ZSTD_decompressStream`).
///
/// Frames may follow one another (RFC 8878 §3: a zstd stream is one or more frames). A frame asking for a window
/// past 8 MiB is refused (RFC 9659 sets that limit for HTTP), so hostile input cannot make the decoder allocate the
/// library's default 128 MiB.
final class ZstdDecoder: ContentDecoder {
    let coding = ContentCoding.zstd
    private(set) var decodedCount: Int64 = 0
    private let limit: Int64?
    private let context: OpaquePointer
    /// The last call ended a frame and flushed it: the input may end here.
    private var atFrameEnd = false

    /// log2 of the largest window accepted: 8 MiB.
    static let maximumWindowBits: Int32 = 23

    init(limit: Int64?) throws(CompressionError) {
        guard let context = ZSTD_createDCtx() else {
            throw CompressionError(.setup, coding: .zstd, "ZSTD_createDCtx failed")
        }
        self.context = context
        self.limit = limit
        let status = ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, Self.maximumWindowBits)
        guard ZSTD_isError(status) == 0 else {
            throw CompressionError(.setup, coding: .zstd, String(cString: ZSTD_getErrorName(status)))
        }
    }

    deinit {
        ZSTD_freeDCtx(context)
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        guard !input.isEmpty else { return }
        decodedCount += try driveCodec(
            input, into: &output, coding: coding, limit: limit.map { $0 - decodedCount }
        ) { (input, room) throws(CompressionError) in
            var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            var destination = ZSTD_outBuffer(dst: room.baseAddress, size: room.count, pos: 0)
            let hint = ZSTD_decompressStream(context, &destination, &source)
            guard ZSTD_isError(hint) == 0 else {
                throw CompressionError(.corruptInput, coding: coding, String(cString: ZSTD_getErrorName(hint)))
            }
            atFrameEnd = hint == 0
            // Room left over means the decoder flushed all it could from the input it took.
            let complete = source.pos == source.size && destination.pos < destination.size
            return CodecStep(consumed: source.pos, produced: destination.pos, isComplete: complete)
        }
    }

    func finish() throws(CompressionError) {
        guard atFrameEnd else {
            throw CompressionError(.truncatedInput, coding: coding, "the stream ended inside a frame")
        }
    }
}
