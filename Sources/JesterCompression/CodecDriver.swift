// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// What one call into a compression library did.
struct CodecStep {
    /// Input bytes the library took.
    var consumed: Int
    /// Output bytes it wrote.
    var produced: Int
    /// It has nothing more to give for this operation until it gets more input (a flush or finish is done).
    var isComplete: Bool
}

/// What an encoder is asked to do with the input it gets: code it, also flush, or also end the stream.
enum CodecOperation {
    case process
    case flush
    case finish
}

/// The room each library call gets: large enough that one call codes a usual upstream read, small enough that a
/// piece never grows the output buffer by much more than it produced.
let outputChunkSize = 16 * 1024

/// Calls `step` until all of `input` is taken and the library says it is complete, appending what it produces to
/// `output` in pieces of at most `outputChunkSize`. With `limit`, a call is never given room for more than one byte
/// past it, and passing it throws `limitExceeded`. Returns the bytes produced.
@discardableResult
func driveCodec(
    _ input: UnsafeRawBufferPointer, into output: inout ByteBuffer, coding: ContentCoding, limit: Int64? = nil,
    _ step: (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) throws(CompressionError) -> CodecStep
) throws(CompressionError) -> Int64 {
    var rest = input
    var total: Int64 = 0
    while true {
        var room = outputChunkSize
        if let limit { room = Int(min(Int64(room), max(0, limit - total) + 1)) }
        var result = CodecStep(consumed: 0, produced: 0, isComplete: true)
        try output.writeWithUnsafeMutableBytes(minimumWritableBytes: room) {
            (buffer) throws(CompressionError) -> Int in
            result = try step(rest, UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(room)))
            return result.produced
        }
        total += Int64(result.produced)
        if let limit, total > limit {
            throw CompressionError(.limitExceeded, coding: coding, "decoded size passes \(limit) bytes")
        }
        rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(result.consumed))
        if result.isComplete, rest.isEmpty { return total }
        if result.consumed == 0, result.produced == 0 {
            // Room was given and input remains, yet the library moved nothing: a loop here would never end.
            throw CompressionError(.library, coding: coding, "the library made no progress")
        }
    }
}
