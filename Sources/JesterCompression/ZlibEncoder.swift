// SPDX-License-Identifier: Apache-2.0
private import CJesterZlib
import JesterCore
import NIOCore

/// The gzip and deflate encoder: a zlib deflate stream with gzip's wrapper (RFC 1952) or zlib's (RFC 1950, what
/// RFC 9110 §8.4.1.2 calls deflate).
///
/// The `z_stream` lives on the heap, never in the class's storage inline: zlib keeps a pointer back to it and
/// checks it on every call.
final class ZlibEncoder: ContentEncoder {
    let coding: ContentCoding
    private let stream: UnsafeMutablePointer<z_stream>
    private var finished = false

    /// zlib's default memory level: 128 KiB of hash tables and the 32 KiB window per stream (zlib.h's formula).
    private static let memoryLevel: Int32 = 8

    init(coding: ContentCoding, level: Int) throws(CompressionError) {
        precondition(coding == .gzip || coding == .deflate, "zlib codes gzip and deflate only")
        self.coding = coding
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits 15 (32 KiB); +16 asks for the gzip wrapper instead of zlib's.
        let windowBits: Int32 = coding == .gzip ? 15 + 16 : 15
        let status = cjester_deflate_init2(stream, Int32(level), windowBits, Self.memoryLevel)
        // (On a throw, deinit frees the stream: deflateEnd ignores one zlib never set up.)
        guard status == Z_OK else {
            throw CompressionError(.setup, coding: coding, "deflateInit2 returned \(status)")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    func encode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        guard !input.isEmpty else { return }
        try run(input, .process, into: &output)
    }

    func flush(into output: inout ByteBuffer) throws(CompressionError) {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), .flush, into: &output)
    }

    func finish(into output: inout ByteBuffer) throws(CompressionError) {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), .finish, into: &output)
        finished = true
    }

    private func run(
        _ input: UnsafeRawBufferPointer, _ operation: CodecOperation, into output: inout ByteBuffer
    ) throws(CompressionError) {
        precondition(!finished, "a finished encoder takes no more input")
        let flush: Int32
        switch operation {
        case .process: flush = Z_NO_FLUSH
        case .flush: flush = Z_SYNC_FLUSH
        case .finish: flush = Z_FINISH
        }
        try driveCodec(input, into: &output, coding: coding) { (input, room) throws(CompressionError) in
            // avail_in is 32 bits: a larger piece goes in over several calls.
            let offered = min(input.count, Int(UInt32.max))
            stream.pointee.next_in = UnsafeMutablePointer(
                mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = UInt32(offered)
            stream.pointee.next_out = room.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = UInt32(room.count)
            // Z_BUF_ERROR only says no progress was possible (nothing to take, no room): not a failure.
            let status = deflate(stream, offered < input.count ? Z_NO_FLUSH : flush)
            guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                throw CompressionError(.library, coding: coding, "deflate returned \(status)")
            }
            let consumed = offered - Int(stream.pointee.avail_in)
            let produced = room.count - Int(stream.pointee.avail_out)
            // Room left over means zlib emitted all it had (for a sync flush, the flush is done too).
            let complete = operation == .finish
                ? status == Z_STREAM_END : stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0
            return CodecStep(consumed: consumed, produced: produced, isComplete: complete)
        }
    }
}
