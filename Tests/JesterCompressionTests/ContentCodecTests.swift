// SPDX-License-Identifier: Apache-2.0
import JesterCompression
import JesterCore
import NIOCore
import Testing

/// The encoders and decoders of every coding, without sockets: round trips in pieces of every size, other
/// implementations' output, and the decoders' failures (corrupt, cut short, trailing bytes, over the limit).
@Suite struct ContentCodecTests {
    /// Text that compresses like a web page: words and markup, not one repeated byte.
    static func sampleText(bytes count: Int, seed: UInt64 = 1) -> [UInt8] {
        let words = ["<div class=\"item\">", "jester", "proxy", "</div>", "route", "upstream", " ", "\n", "{\"id\": ",
            "42}", "compress", "stream", "header", "body", "<a href=\"/x\">", "</a>"].map { Array($0.utf8) }
        var state = seed
        var text: [UInt8] = []
        text.reserveCapacity(count + 32)
        while text.count < count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            text += words[Int(state >> 59) % words.count]
        }
        return Array(text.prefix(count))
    }

    /// Codes `input` with `coding` in pieces of `pieceSize`, then decodes the result in pieces of `pieceSize`.
    static func roundTrip(_ input: [UInt8], _ coding: ContentCoding, level: Int? = nil, pieceSize: Int) throws
        -> (coded: [UInt8], decoded: [UInt8])
    {
        let encoder = try coding.makeEncoder(level: level)
        var coded = ByteBuffer()
        for start in stride(from: 0, to: input.count, by: pieceSize) {
            try input[start..<min(start + pieceSize, input.count)].withUnsafeBytes {
                try encoder.encode($0, into: &coded)
            }
        }
        try encoder.finish(into: &coded)
        let codedBytes = Array(coded.readableBytesView)
        return (codedBytes, try decode(codedBytes, coding, pieceSize: pieceSize))
    }

    static func decode(_ coded: [UInt8], _ coding: ContentCoding, limit: Int64? = nil, pieceSize: Int = 4096) throws
        -> [UInt8]
    {
        let decoder = try coding.makeDecoder(limit: limit)
        var decoded = ByteBuffer()
        for start in stride(from: 0, to: coded.count, by: pieceSize) {
            try coded[start..<min(start + pieceSize, coded.count)].withUnsafeBytes {
                try decoder.decode($0, into: &decoded)
            }
        }
        try decoder.finish()
        #expect(decoder.decodedCount == Int64(decoded.readableBytes))
        return Array(decoded.readableBytesView)
    }

    @Test(arguments: ContentCoding.allCases, [1, 7, 1000, 65536])
    func roundTripsInPiecesOfAnySize(coding: ContentCoding, pieceSize: Int) throws {
        let input = Self.sampleText(bytes: 200_000)
        let (coded, decoded) = try Self.roundTrip(input, coding, pieceSize: pieceSize)
        #expect(decoded == input)
        #expect(coded.count < input.count / 3, "\(coding) barely compressed: \(coded.count) bytes")
    }

    @Test(arguments: ContentCoding.allCases)
    func roundTripsAnEmptyBodyAndOneByte(coding: ContentCoding) throws {
        #expect(try Self.roundTrip([], coding, pieceSize: 1).decoded == [])
        #expect(try Self.roundTrip([0x41], coding, pieceSize: 1).decoded == [0x41])
    }

    @Test(arguments: ContentCoding.allCases)
    func everyLevelRoundTripsAndOutOfRangeLevelsAreClamped(coding: ContentCoding) throws {
        let input = Self.sampleText(bytes: 20_000, seed: 7)
        let range = coding.levelRange
        for level in [range.lowerBound - 5] + Array(range) + [range.upperBound + 5] {
            #expect(try Self.roundTrip(input, coding, level: level, pieceSize: 3000).decoded == input, "level \(level)")
        }
    }

    @Test(arguments: ContentCoding.allCases)
    func randomBytesRoundTrip(coding: ContentCoding) throws {
        // Incompressible input: the coded body is a little larger, and still decodes.
        var state: UInt64 = 99
        let input = (0..<100_000).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        #expect(try Self.roundTrip(input, coding, pieceSize: 8192).decoded == input)
    }

    @Test(arguments: CodingVectors.vectors.map { ($0.name, $0.coding, $0.bytes) })
    func decodesOtherImplementationsOutput(name: String, coding: ContentCoding, bytes: [UInt8]) throws {
        for pieceSize in [1, 2, 3, bytes.count] {
            #expect(try Self.decode(bytes, coding, pieceSize: pieceSize) == CodingVectors.vectorText, "\(name)")
        }
    }

    @Test func aGzipOfTwoMembersDecodesToBoth() throws {
        let gzip = CodingVectors.vectors[0].bytes
        #expect(try Self.decode(gzip + gzip, .gzip) == CodingVectors.vectorText + CodingVectors.vectorText)
    }

    @Test(arguments: ContentCoding.allCases)
    func aFlushMakesEverythingSoFarDecodable(coding: ContentCoding) throws {
        // Server-sent events: each event must reach the client before the next is written.
        let encoder = try coding.makeEncoder()
        let decoder = try coding.makeDecoder()
        var decoded = ByteBuffer()
        for event in 0..<5 {
            let text = Array("data: event \(event)\n\n".utf8)
            var coded = ByteBuffer()
            try text.withUnsafeBytes { try encoder.encode($0, into: &coded) }
            try encoder.flush(into: &coded)
            try decoder.decode(coded, into: &decoded)
            #expect(decoded.readString(length: decoded.readableBytes) == String(decoding: text, as: UTF8.self))
        }
        var end = ByteBuffer()
        try encoder.finish(into: &end)
        try decoder.decode(end, into: &decoded)
        try decoder.finish()
        #expect(decoded.readableBytes == 0)
    }

    @Test(arguments: ContentCoding.allCases)
    func aStreamCutShortFailsAtFinish(coding: ContentCoding) throws {
        let (coded, _) = try Self.roundTrip(Self.sampleText(bytes: 50_000), coding, pieceSize: 50_000)
        let error = #expect(throws: CompressionError.self) {
            _ = try Self.decode(Array(coded.dropLast(4)), coding)
        }
        #expect(error?.code == .truncatedInput || error?.code == .corruptInput, "\(String(describing: error))")
        #expect(error?.isInputError == true)
        // Nothing at all is cut short too: a coded body is never empty.
        #expect(throws: CompressionError.self) { _ = try Self.decode([], coding) }
    }

    @Test(arguments: ContentCoding.allCases)
    func garbageIsCorruptInput(coding: ContentCoding) throws {
        let garbage: [UInt8] = Array(repeating: 0xFF, count: 64)
        let error = #expect(throws: CompressionError.self) { _ = try Self.decode(garbage, coding) }
        #expect(error?.code == .corruptInput, "\(String(describing: error))")
        #expect(error?.coding == coding)
    }

    @Test(arguments: [ContentCoding.deflate, .br])
    func bytesAfterTheEndAreRefused(coding: ContentCoding) throws {
        let vector = CodingVectors.vectors.first { $0.coding == coding }!.bytes
        let error = #expect(throws: CompressionError.self) { _ = try Self.decode(vector + [0x00, 0x01], coding) }
        #expect(error?.code == .trailingData, "\(String(describing: error))")
    }

    @Test(arguments: [ContentCoding.gzip, .zstd])
    func bytesAfterTheEndThatAreNotAnotherMemberAreRefused(coding: ContentCoding) throws {
        // gzip and zstd allow several members or frames: what follows must be a valid one.
        let vector = CodingVectors.vectors.first { $0.coding == coding }!.bytes
        let error = #expect(throws: CompressionError.self) {
            _ = try Self.decode(vector + [0x00, 0x01, 0x02, 0x03], coding)
        }
        #expect(error?.isInputError == true, "\(String(describing: error))")
    }
}
