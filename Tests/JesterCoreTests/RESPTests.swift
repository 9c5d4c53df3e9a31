// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

/// The RESP2 encoder and the incremental decoder, with inputs cut at every point and in random pieces.
@Suite struct RESPTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Feeds `stream` in `pieces` and collects every value, calling `next` until it asks for more after each piece.
    private func decode(
        _ pieces: [ArraySlice<UInt8>], limits: RESPDecoder.Limits = .init()
    ) throws(RESPError) -> [RESPValue] {
        var decoder = RESPDecoder(limits: limits)
        var values: [RESPValue] = []
        for piece in pieces {
            decoder.feed(piece)
            while let value = try decoder.next() { values.append(value) }
        }
        return values
    }

    /// A stream of every type: the values it must decode to.
    private let mixedStream =
        "+OK\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n:0\r\n:-42\r\n:9223372036854775807\r\n"
        + "$5\r\nhe\r\nl\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n*4\r\n:1\r\n:3\r\n:0\r\n:120000\r\n"
        + "*2\r\n*2\r\n+a\r\n$1\r\nb\r\n*1\r\n:-9223372036854775808\r\n"
    private let mixedValues: [RESPValue] = [
        .simpleString("OK"), .error("NOSCRIPT No matching script. Please use EVAL."), .integer(0), .integer(-42),
        .integer(.max), .bulkString(Array("he\r\nl".utf8)), .bulkString([]), .bulkString(nil), .array(nil),
        .array([]), .array([.integer(1), .integer(3), .integer(0), .integer(120_000)]),
        .array([.array([.simpleString("a"), .bulkString([UInt8(ascii: "b")])]), .array([.integer(.min)])]),
    ]

    @Test func encodesCommandsAsArraysOfBulkStrings() {
        #expect(RESPEncoder.command(["GET", "k"]) == bytes("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
        #expect(RESPEncoder.command(["SET", "", "é"]) == bytes("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\né\r\n"))
        var pipelined: [UInt8] = []
        RESPEncoder.appendCommand(["PING"], to: &pipelined)
        RESPEncoder.appendCommand(["ECHO", "a\r\nb"], to: &pipelined)
        #expect(pipelined == bytes("*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n"))
    }

    @Test func encodedCommandsDecodeBackToTheirArguments() throws {
        let arguments = ["EVALSHA", "0123abcd", "1", "jester:rl:client 10.0.0.1", "100000", "500000", "1"]
        let values = try decode([RESPEncoder.command(arguments)[...]])
        #expect(values == [.array(arguments.map { .bulkString(Array($0.utf8)) })])
    }

    @Test func decodesEveryTypeInOnePiece() throws {
        #expect(try decode([bytes(mixedStream)[...]]) == mixedValues)
    }

    @Test func decodesTheStreamCutAtEveryPoint() throws {
        let stream = bytes(mixedStream)
        for cut in 0...stream.count {
            #expect(try decode([stream[..<cut], stream[cut...]]) == mixedValues, "cut at \(cut)")
        }
    }

    @Test func decodesTheStreamOneByteAtATime() throws {
        let stream = bytes(mixedStream)
        #expect(try decode(stream.indices.map { stream[$0...$0] }) == mixedValues)
    }

    @Test func decodesTheStreamInRandomPieces() throws {
        let stream = bytes(mixedStream + mixedStream + mixedStream)
        var random = SplitMix64(seed: 18)
        for _ in 0..<300 {
            var pieces: [ArraySlice<UInt8>] = []
            var index = 0
            while index < stream.count {
                let length = Int.random(in: 0...12, using: &random)
                pieces.append(stream[index..<min(stream.count, index + length)])
                index += length
            }
            #expect(try decode(pieces) == mixedValues + mixedValues + mixedValues)
        }
    }

    @Test func anIncompleteValueWaitsAndKeepsItsBytes() throws {
        var decoder = RESPDecoder()
        decoder.feed(bytes("*2\r\n:1\r\n$3\r\nab"))
        #expect(try decoder.next() == nil)
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedBytes == 14)
        decoder.feed(bytes("c\r\n+tail"))
        #expect(try decoder.next() == .array([.integer(1), .bulkString(bytes("abc"))]))
        #expect(try decoder.next() == nil)
        decoder.feed(bytes("\r\n"))
        #expect(try decoder.next() == .simpleString("tail"))
        #expect(decoder.bufferedBytes == 0)
    }

    @Test func aLongPipelineDecodesInOrder() throws {
        var decoder = RESPDecoder()
        var values: [RESPValue] = []
        for round in 0..<2000 {
            decoder.feed(bytes(":\(round)\r\n*1\r\n$1\r\nx\r\n"))
            // Read only half the time, so unread replies pile up and the buffer compacts around them.
            if round % 2 == 1 { while let value = try decoder.next() { values.append(value) } }
        }
        #expect(values.count == 4000)
        #expect(values[3998] == .integer(1999))
        #expect(values[3999] == .array([.bulkString(bytes("x"))]))
    }

    // MARK: Bad input and limits

    private func failure(_ text: String, limits: RESPDecoder.Limits = .init()) -> RESPError? {
        do {
            _ = try decode([bytes(text)[...]], limits: limits)
            return nil
        } catch {
            return error
        }
    }

    @Test func malformedInputIsRefused() {
        #expect(failure("%1\r\n")?.code == .unknownType)  // a RESP3 map
        #expect(failure("_\r\n")?.code == .unknownType)  // RESP3 null
        #expect(failure("+OK\n")?.code == .malformedLine)
        #expect(failure("+OK\rX")?.code == .malformedLine)
        #expect(failure(":12a\r\n")?.code == .malformedInteger)
        #expect(failure(":\r\n")?.code == .malformedInteger)
        #expect(failure(":-\r\n")?.code == .malformedInteger)
        #expect(failure(":9223372036854775808\r\n")?.code == .malformedInteger)
        #expect(failure("$-2\r\n")?.code == .malformedInteger)
        #expect(failure("*-5\r\n")?.code == .malformedInteger)
        #expect(failure("$3\r\nabcd\r\n")?.code == .malformedLine)
        #expect(failure("$3\r\nabc\rX")?.code == .malformedLine)
        #expect(failure("+OK\r\n:1\r\n?")?.offset == 9)
    }

    @Test func aFailedDecoderStaysFailed() {
        var decoder = RESPDecoder()
        decoder.feed(bytes("!oops\r\n"))
        #expect(throws: RESPError(.unknownType, offset: 0)) { try decoder.next() }
        decoder.feed(bytes("+OK\r\n"))
        #expect(throws: RESPError(.unknownType, offset: 0)) { try decoder.next() }
    }

    @Test func lengthsAreCheckedBeforeTheBytesArrive() {
        let limits = RESPDecoder.Limits(maxBulkLength: 8, maxArrayCount: 3, maxDepth: 2, maxLineLength: 10)
        #expect(failure("$9\r\n", limits: limits)?.code == .bulkTooLong)
        #expect(failure("$8\r\n12345678\r\n", limits: limits) == nil)
        #expect(failure("*4\r\n", limits: limits)?.code == .arrayTooLong)
        #expect(failure("*1\r\n*1\r\n:1\r\n", limits: limits) == nil)
        #expect(failure("*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits)?.code == .tooDeep)
        #expect(failure("*1\r\n*1\r\n*0\r\n", limits: limits) == nil)
        #expect(failure("+0123456789\r\n", limits: limits) == nil)
        // Too long is known before its end arrives.
        #expect(failure("+0123456789A", limits: limits)?.code == .lineTooLong)
        #expect(failure(":99999999999999999999", limits: limits)?.code == .lineTooLong)
    }

    @Test func anIncompleteValueCannotGrowWithoutBound() {
        let limits = RESPDecoder.Limits(maxBufferedBytes: 64)
        // An array of a thousand small elements, of which 60 bytes have come: still waiting.
        #expect(failure("*1000\r\n" + String(repeating: ":1\r\n", count: 13), limits: limits) == nil)
        #expect(failure("*1000\r\n" + String(repeating: ":1\r\n", count: 20), limits: limits)?.code == .valueTooLarge)
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var random = SplitMix64(seed: 7)
        let alphabet = bytes("+-:$*\r\n0123456789-1abc")
        let limits = RESPDecoder.Limits(maxBulkLength: 64, maxArrayCount: 16, maxDepth: 3, maxBufferedBytes: 512)
        for _ in 0..<2000 {
            var decoder = RESPDecoder(limits: limits)
            let length = Int.random(in: 1...80, using: &random)
            let input = (0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &random)] }
            var index = 0
            while index < input.count {
                let end = min(input.count, index + Int.random(in: 1...5, using: &random))
                decoder.feed(input[index..<end])
                index = end
                do {
                    while try decoder.next() != nil {}
                } catch {
                    break
                }
            }
        }
    }
}
