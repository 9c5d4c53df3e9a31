// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// A streaming decoder for one coded body (a request body on a `decompress_requests` route, or a test reading a
/// coded response back), with a limit on the decoded size.
///
/// The limit is enforced while decoding: the library is never given room for more than the limit plus one byte,
/// so a body that expands a thousandfold (a zip bomb) fails at the limit having allocated no more than it.
public protocol ContentDecoder: AnyObject {
    /// The coding this decoder reads.
    var coding: ContentCoding { get }

    /// Decoded bytes produced so far.
    var decodedCount: Int64 { get }

    /// Decodes `input`, appending the decoded bytes to `output`. Throws `limitExceeded` as soon as the decoded
    /// size would pass the limit, and the input errors (`CompressionError.isInputError`) on bad bytes.
    func decode(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(CompressionError)

    /// Checks that the coded stream ended where the input did; throws `truncatedInput` when it did not.
    func finish() throws(CompressionError)
}

extension ContentDecoder {
    /// Decodes the readable bytes of `input` (which is not consumed), appending to `output`.
    public func decode(_ input: ByteBuffer, into output: inout ByteBuffer) throws(CompressionError) {
        try input.withUnsafeReadableBytes { (bytes) throws(CompressionError) in try decode(bytes, into: &output) }
    }
}
