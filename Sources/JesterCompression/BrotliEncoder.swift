// SPDX-License-Identifier: Apache-2.0
private import CJesterBrotli
import JesterCore
import NIOCore

/// The br encoder, over libbrotlienc's streaming interface.
///
/// The window is 512 KiB (lgwin 19, ngx_brotli's default) rather than the library's 4 MiB: a proxy holds one
/// encoder per response in flight, and on the text sizes it compresses the larger window gains little.
final class BrotliEncoder: ContentEncoder {
    let coding = ContentCoding.br
    private let state: OpaquePointer
    private var finished = false

    /// log2 of the window size.
    static let windowBits: UInt32 = 19

    init(level: Int) throws(CompressionError) {
        guard let state = BrotliEncoderCreateInstance(nil, nil, nil) else {
            throw CompressionError(.setup, coding: .br, "BrotliEncoderCreateInstance failed")
        }
        self.state = state
        guard BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, UInt32(level)) != 0,
            BrotliEncoderSetParameter(state, BROTLI_PARAM_LGWIN, Self.windowBits) != 0
        else {
            throw CompressionError(.setup, coding: .br, "quality \(level) or window refused")
        }
    }

    deinit {
        BrotliEncoderDestroyInstance(state)
    }

    func encode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        guard !input.isEmpty else { return }
        try run(input, BROTLI_OPERATION_PROCESS, into: &output)
    }

    func flush(into output: inout ByteBuffer) throws(CompressionError) {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), BROTLI_OPERATION_FLUSH, into: &output)
    }

    func finish(into output: inout ByteBuffer) throws(CompressionError) {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), BROTLI_OPERATION_FINISH, into: &output)
        finished = true
    }

    private func run(
        _ input: UnsafeRawBufferPointer, _ operation: BrotliEncoderOperation, into output: inout ByteBuffer
    ) throws(CompressionError) {
        precondition(!finished, "a finished encoder takes no more input")
        try driveCodec(input, into: &output, coding: coding) { (input, room) throws(CompressionError) in
            var availableIn = input.count
            var nextIn = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
            var availableOut = room.count
            var nextOut = room.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let status = BrotliEncoderCompressStream(
                state, operation, &availableIn, &nextIn, &availableOut, &nextOut, nil)
            guard status != 0 else {
                throw CompressionError(.library, coding: coding, "BrotliEncoderCompressStream failed")
            }
            // Done when all input is taken and nothing waits in the encoder (for FINISH: the stream is closed).
            let complete = operation == BROTLI_OPERATION_FINISH
                ? BrotliEncoderIsFinished(state) != 0
                : availableIn == 0 && BrotliEncoderHasMoreOutput(state) == 0
            return CodecStep(
                consumed: input.count - availableIn, produced: room.count - availableOut, isComplete: complete)
        }
    }
}
