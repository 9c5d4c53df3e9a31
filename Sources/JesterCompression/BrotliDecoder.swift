// SPDX-License-Identifier: Apache-2.0
private import CJesterBrotli
import JesterCore
import NIOCore

/// The br decoder, over libbrotlidec's streaming interface.
///
/// Large windows (the non-standard extension) stay off, so a stream can ask for at most RFC 7932's 16 MiB window.
final class BrotliDecoder: ContentDecoder {
    let coding = ContentCoding.br
    private(set) var decodedCount: Int64 = 0
    private let limit: Int64?
    private let state: OpaquePointer
    private var ended = false

    init(limit: Int64?) throws(CompressionError) {
        guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else {
            throw CompressionError(.setup, coding: .br, "BrotliDecoderCreateInstance failed")
        }
        self.state = state
        self.limit = limit
    }

    deinit {
        BrotliDecoderDestroyInstance(state)
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        guard !input.isEmpty else { return }
        decodedCount += try driveCodec(
            input, into: &output, coding: coding, limit: limit.map { $0 - decodedCount }
        ) { (input, room) throws(CompressionError) in
            if ended, !input.isEmpty {
                throw CompressionError(.trailingData, coding: coding, "data after the end of the stream")
            }
            var availableIn = input.count
            var nextIn = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
            var availableOut = room.count
            var nextOut = room.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let result = BrotliDecoderDecompressStream(state, &availableIn, &nextIn, &availableOut, &nextOut, nil)
            let step = CodecStep(
                consumed: input.count - availableIn, produced: room.count - availableOut, isComplete: false)
            switch result {
            case BROTLI_DECODER_RESULT_SUCCESS:
                ended = true
                return CodecStep(consumed: step.consumed, produced: step.produced, isComplete: availableIn == 0)
            case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
                return CodecStep(consumed: step.consumed, produced: step.produced, isComplete: true)
            case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
                return step
            default:
                let reason = String(cString: BrotliDecoderErrorString(BrotliDecoderGetErrorCode(state)))
                throw CompressionError(.corruptInput, coding: coding, reason)
            }
        }
    }

    func finish() throws(CompressionError) {
        guard ended else {
            throw CompressionError(.truncatedInput, coding: coding, "the stream ended before its last block")
        }
    }
}
