// SPDX-License-Identifier: Apache-2.0
private import CJesterZstd
import JesterCore
import NIOCore

/// The zstd encoder, over libzstd's streaming interface (`ZSTD_compressStream2`), one frame per body.
///
/// Levels stop at 19 (`ContentCoding.levelRange`), whose windows stay within the 8 MiB HTTP's zstd coding allows
/// (RFC 9659), so every conforming client decodes what this produces.
final class ZstdEncoder: ContentEncoder {
    let coding = ContentCoding.zstd
    private let context: OpaquePointer
    private var finished = false

    init(level: Int) throws(CompressionError) {
        guard let context = ZSTD_createCCtx() else {
            throw CompressionError(.setup, coding: .zstd, "ZSTD_createCCtx failed")
        }
        self.context = context
        let status = ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        guard ZSTD_isError(status) == 0 else {
            throw CompressionError(.setup, coding: .zstd, String(cString: ZSTD_getErrorName(status)))
        }
    }

    deinit {
        ZSTD_freeCCtx(context)
    }

    func encode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        guard !input.isEmpty else { return }
        try run(input, ZSTD_e_continue, into: &output)
    }

    func flush(into output: inout ByteBuffer) throws(CompressionError) {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_flush, into: &output)
    }

    func finish(into output: inout ByteBuffer) throws(CompressionError) {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_end, into: &output)
        finished = true
    }

    private func run(
        _ input: UnsafeRawBufferPointer, _ directive: ZSTD_EndDirective, into output: inout ByteBuffer
    ) throws(CompressionError) {
        precondition(!finished, "a finished encoder takes no more input")
        try driveCodec(input, into: &output, coding: coding) { (input, room) throws(CompressionError) in
            var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            var destination = ZSTD_outBuffer(dst: room.baseAddress, size: room.count, pos: 0)
            let remaining = ZSTD_compressStream2(context, &destination, &source, directive)
            guard ZSTD_isError(remaining) == 0 else {
                throw CompressionError(.library, coding: coding, String(cString: ZSTD_getErrorName(remaining)))
            }
            // For a flush or end, `remaining` is what is still to be written; 0 means done.
            let complete = directive == ZSTD_e_continue ? source.pos == source.size : remaining == 0
            return CodecStep(consumed: source.pos, produced: destination.pos, isComplete: complete)
        }
    }
}
