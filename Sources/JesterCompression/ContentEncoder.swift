// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// A streaming encoder for one response body: pieces in as they come from upstream, coded bytes out as the library
/// produces them, the coding's end at `finish`.
///
/// Memory is bounded by the library's window and the pieces passed in, never by the body: each call appends what
/// the library gave for that piece (often nothing, while it fills a block) and keeps no copy of its own. An encoder
/// holds its library's state and frees it when released; it belongs to one exchange on one event loop.
public protocol ContentEncoder: AnyObject {
    /// The coding this encoder produces.
    var coding: ContentCoding { get }

    /// Codes `input`, appending whatever the library produced to `output`.
    func encode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError)

    /// Appends everything coded so far, in a form the client can decode up to here (zlib's sync flush,
    /// brotli's and zstd's flush). For streams whose pieces must not wait for the next (server-sent events);
    /// each flush costs a few bytes of density.
    func flush(into output: inout ByteBuffer) throws(CompressionError)

    /// Appends the rest and the coding's end (gzip's trailer, brotli's last block, zstd's frame end). The encoder
    /// takes nothing more afterwards.
    func finish(into output: inout ByteBuffer) throws(CompressionError)
}

extension ContentEncoder {
    /// Codes the readable bytes of `input` (which is not consumed), appending to `output`.
    public func encode(_ input: ByteBuffer, into output: inout ByteBuffer) throws(CompressionError) {
        try input.withUnsafeReadableBytes { (bytes) throws(CompressionError) in try encode(bytes, into: &output) }
    }
}

extension ContentCoding {
    /// A new encoder for this coding at `level` (the coding's default when nil; clamped to `levelRange`).
    public func makeEncoder(level: Int? = nil) throws(CompressionError) -> any ContentEncoder {
        let level = min(max(level ?? defaultLevel, levelRange.lowerBound), levelRange.upperBound)
        switch self {
        case .gzip, .deflate: return try ZlibEncoder(coding: self, level: level)
        case .br: return try BrotliEncoder(level: level)
        case .zstd: return try ZstdEncoder(level: level)
        }
    }

    /// A new decoder for this coding that refuses to produce more than `limit` bytes in all (nil: no limit).
    public func makeDecoder(limit: Int64? = nil) throws(CompressionError) -> any ContentDecoder {
        switch self {
        case .gzip, .deflate: return try ZlibDecoder(coding: self, limit: limit)
        case .br: return try BrotliDecoder(limit: limit)
        case .zstd: return try ZstdDecoder(limit: limit)
        }
    }
}
