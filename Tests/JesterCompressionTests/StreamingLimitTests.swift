// SPDX-License-Identifier: Apache-2.0
import JesterCompression
import JesterCore
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Memory stays bounded whatever the body's size: a long body coded and decoded in small pieces with the output
/// drained after each, and decoders that stop at their limit however far the input would expand.
@Suite struct StreamingLimitTests {
    static let pieceSize = 4096
    /// The body: 64 MiB, piece `i` a block of text whose first bytes say `i`, so no two pieces are alike and a
    /// misplaced piece shows.
    static let bodySize = 64 << 20
    static let block = ContentCodecTests.sampleText(bytes: pieceSize, seed: 3)

    static func piece(_ index: Int) -> [UInt8] {
        var piece = block
        let label = Array(String(index, radix: 16).utf8)
        piece.replaceSubrange(0..<label.count, with: label)
        return piece
    }

    @Test(arguments: ContentCoding.allCases)
    func a64MiBBodyStreamsThroughInSmallPiecesWithBoundedOutput(coding: ContentCoding) throws {
        let encoder = try coding.makeEncoder()
        let decoder = try coding.makeDecoder()
        var coded = ByteBuffer()
        var decoded = ByteBuffer()
        var largestCodedPiece = 0
        var largestDecodedPiece = 0
        var totalCoded = 0
        var checked = 0
        // Decodes what the encoder gave and checks every whole piece decoded so far against the original, then
        // drops both buffers' contents, as an adapter does once bytes are written to the socket.
        func pass() throws {
            largestCodedPiece = max(largestCodedPiece, coded.readableBytes)
            totalCoded += coded.readableBytes
            try decoder.decode(coded, into: &decoded)
            coded.clear()
            largestDecodedPiece = max(largestDecodedPiece, decoded.readableBytes)
            while decoded.readableBytes >= Self.pieceSize {
                let expected = Self.piece(checked)
                let same = decoded.withUnsafeReadableBytes { bytes in
                    expected.withUnsafeBytes { memcmp(bytes.baseAddress!, $0.baseAddress!, Self.pieceSize) == 0 }
                }
                #expect(same, "piece \(checked) of \(coding) differs")
                if !same { throw CompressionError(.library, coding: coding, "mismatch") }
                decoded.moveReaderIndex(forwardBy: Self.pieceSize)
                checked += 1
            }
            decoded.discardReadBytes()
        }
        for index in 0..<(Self.bodySize / Self.pieceSize) {
            try Self.piece(index).withUnsafeBytes { try encoder.encode($0, into: &coded) }
            try pass()
        }
        try encoder.finish(into: &coded)
        try pass()
        try decoder.finish()
        #expect(checked == Self.bodySize / Self.pieceSize)
        #expect(decoded.readableBytes == 0)
        // No call gave back more than a few windows' worth: nothing accumulated the body.
        #expect(largestCodedPiece < 4 << 20, "\(coding): \(largestCodedPiece) bytes from one piece")
        #expect(largestDecodedPiece < 4 << 20, "\(coding): \(largestDecodedPiece) bytes decoded from one piece")
        #expect(coded.capacity < 8 << 20 && decoded.capacity < 8 << 20)
        #expect(totalCoded < Self.bodySize / 4, "\(coding): \(totalCoded) bytes")
    }

    /// 64 MiB of zeros, coded: a few KiB to tens of KiB that expand 1000-fold and more.
    static func bomb(_ coding: ContentCoding) throws -> ByteBuffer {
        let encoder = try coding.makeEncoder()
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var coded = ByteBuffer()
        for _ in 0..<64 { try zeros.withUnsafeBytes { try encoder.encode($0, into: &coded) } }
        try encoder.finish(into: &coded)
        return coded
    }

    @Test(arguments: ContentCoding.allCases)
    func aZipBombStopsAtTheLimitHavingAllocatedNoMore(coding: ContentCoding) throws {
        let bomb = try Self.bomb(coding)
        #expect(bomb.readableBytes < 1 << 20)
        let limit: Int64 = 1 << 20
        let decoder = try coding.makeDecoder(limit: limit)
        var decoded = ByteBuffer()
        let error = #expect(throws: CompressionError.self) { try decoder.decode(bomb, into: &decoded) }
        #expect(error?.code == .limitExceeded)
        #expect(error?.isInputError == false)
        // At most one byte past the limit was produced, and the buffer grew no further than the limit's size class.
        #expect(decoded.readableBytes <= Int(limit) + 1)
        #expect(decoded.capacity <= 2 * Int(limit) + 64 * 1024, "capacity \(decoded.capacity)")
    }

    @Test(arguments: ContentCoding.allCases)
    func theLimitCountsAcrossCallsAndABodyOfExactlyTheLimitPasses(coding: ContentCoding) throws {
        let input = ContentCodecTests.sampleText(bytes: 100_000, seed: 5)
        let (coded, _) = try ContentCodecTests.roundTrip(input, coding, pieceSize: 100_000)
        #expect(try ContentCodecTests.decode(coded, coding, limit: 100_000, pieceSize: 10) == input)
        // One byte less: refused, wherever in the pieces the limit falls.
        for pieceSize in [1, 10, coded.count] {
            let error = #expect(throws: CompressionError.self) {
                _ = try ContentCodecTests.decode(coded, coding, limit: 99_999, pieceSize: pieceSize)
            }
            #expect(error?.code == .limitExceeded)
        }
    }
}
