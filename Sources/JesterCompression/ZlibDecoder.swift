// SPDX-License-Identifier: Apache-2.0
private import CJesterZlib
import JesterCore
import NIOCore

/// The gzip and deflate decoder, over zlib's inflate.
///
/// gzip reads every member of a multi-member file (RFC 1952 §2.2: concatenated members are one file, as
/// `gzip -d` reads them). deflate reads the zlib format RFC 9110 names, and raw deflate data too, which some
/// clients send under that name: the first two bytes decide (a zlib header is a multiple of 31 with method 8), as
/// browsers do, so the decoder waits for them before it starts zlib.
final class ZlibDecoder: ContentDecoder {
    let coding: ContentCoding
    private(set) var decodedCount: Int64 = 0
    private let limit: Int64?
    private let stream: UnsafeMutablePointer<z_stream>
    /// deflate's first bytes, held until there are two to tell zlib's header from raw data.
    private var header: [UInt8] = []
    private var started = false
    /// The coded stream (the last gzip member so far) has ended.
    private var ended = false

    init(coding: ContentCoding, limit: Int64?) throws(CompressionError) {
        precondition(coding == .gzip || coding == .deflate, "zlib reads gzip and deflate only")
        self.coding = coding
        self.limit = limit
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        if coding == .gzip {
            // windowBits 15 + 16: the gzip wrapper only (a zlib stream is not gzip).
            try start(windowBits: 15 + 16)
        }
    }

    deinit {
        if started { inflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    private func start(windowBits: Int32) throws(CompressionError) {
        let status = cjester_inflate_init2(stream, windowBits)
        guard status == Z_OK else {
            throw CompressionError(.setup, coding: coding, "inflateInit2 returned \(status)")
        }
        started = true
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        guard !input.isEmpty else { return }
        var rest = input
        if !started {
            let held = header.count
            header += input.prefix(2 - held)
            guard header.count == 2 else { return }
            // RFC 1950 §2.2: CM (the low nibble of CMF) is 8, and CMF * 256 + FLG is a multiple of 31.
            let isZlib = header[0] & 0x0F == 8 && (Int(header[0]) << 8 | Int(header[1])) % 31 == 0
            try start(windowBits: isZlib ? 15 : -15)
            // The two first bytes (some may have come in an earlier call), then the rest of this input.
            // (Array.withUnsafeBytes rethrows untyped errors: the typed one is carried out by hand.)
            var failure: CompressionError?
            header.withUnsafeBytes { bytes in
                do throws(CompressionError) { try inflate(bytes, into: &output) } catch { failure = error }
            }
            if let failure { throw failure }
            header = []
            rest = UnsafeRawBufferPointer(rebasing: input.dropFirst(2 - held))
        }
        try inflate(rest, into: &output)
    }

    func finish() throws(CompressionError) {
        guard ended else {
            throw CompressionError(.truncatedInput, coding: coding, "the stream ended before its end marker")
        }
    }

    private func inflate(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError) {
        decodedCount += try driveCodec(
            input, into: &output, coding: coding, limit: limit.map { $0 - decodedCount }
        ) { (input, room) throws(CompressionError) in
            guard !input.isEmpty || !ended else { return CodecStep(consumed: 0, produced: 0, isComplete: true) }
            if ended {
                // Bytes after the end: another gzip member, or garbage.
                guard coding == .gzip else {
                    throw CompressionError(.trailingData, coding: coding, "data after the end of the stream")
                }
                inflateReset(stream)
                ended = false
            }
            let offered = min(input.count, Int(UInt32.max))
            stream.pointee.next_in = UnsafeMutablePointer(
                mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = UInt32(offered)
            stream.pointee.next_out = room.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = UInt32(room.count)
            let status = CJesterZlib.inflate(stream, Z_NO_FLUSH)
            switch status {
            case Z_OK, Z_BUF_ERROR: break
            case Z_STREAM_END: ended = true
            case Z_DATA_ERROR, Z_NEED_DICT:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "invalid data"
                throw CompressionError(.corruptInput, coding: coding, message)
            default:
                throw CompressionError(.library, coding: coding, "inflate returned \(status)")
            }
            let consumed = offered - Int(stream.pointee.avail_in)
            let produced = room.count - Int(stream.pointee.avail_out)
            // Done when all input is taken and, unless the stream ended, room is left (zlib gave all it had).
            let complete = stream.pointee.avail_in == 0 && (ended || stream.pointee.avail_out > 0)
            return CodecStep(consumed: consumed, produced: produced, isComplete: complete)
        }
    }
}
