// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// SipHash-2-4-128 against the reference vectors, and HTTP-date parsing and formatting (RFC 9110 §5.6.7).
@Suite struct HashAndDateTests {
    /// Aumasson and Bernstein's reference implementation, vectors.h, `vectors_sip128`: key 00 01 .. 0f, message
    /// i = bytes 00 .. i-1; the output bytes in order.
    static let sip128Vectors: [(length: Int, bytes: [UInt8])] = [
        (0, [0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93]),
        (1, [0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45]),
        (2, [0x81, 0x77, 0x22, 0x8d, 0xa4, 0xa4, 0x5d, 0xc7, 0xfc, 0xa3, 0x8b, 0xde, 0xf6, 0x0a, 0xff, 0xe4]),
        (7, [0xa1, 0xf1, 0xeb, 0xbe, 0xd8, 0xdb, 0xc1, 0x53, 0xc0, 0xb8, 0x4a, 0xa6, 0x1f, 0xf0, 0x82, 0x39]),
        (8, [0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3, 0x14, 0x97, 0xb4]),
        (9, [0x26, 0x44, 0x99, 0x06, 0x0a, 0xd9, 0xba, 0xab, 0xc4, 0x7f, 0x8b, 0x02, 0xbb, 0x6d, 0x71, 0xed]),
        (15, [0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3, 0xd9]),
        (16, [0x6e, 0xe2, 0xa4, 0xca, 0x67, 0xb0, 0x54, 0xbb, 0xfd, 0x33, 0x15, 0xbf, 0x85, 0x23, 0x05, 0x77]),
        (63, [0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e, 0x06, 0x9a, 0x97, 0x3f, 0xbd, 0x7c]),
    ]
    static let referenceSeed: (UInt64, UInt64) = (0x0706_0504_0302_0100, 0x0F0E_0D0C_0B0A_0908)

    @Test(arguments: HashAndDateTests.sip128Vectors.indices)
    func theKeyHashIsSipHash24With128BitOutput(index: Int) {
        let vector = Self.sip128Vectors[index]
        var hasher = CacheKeyHasher(seed: Self.referenceSeed)
        hasher.write(bytes: (0..<vector.length).map { UInt8($0) })
        #expect(hasher.finalize().bytes == vector.bytes)
    }

    @Test func finalizingDoesNotConsumeTheHasherAndHexIsTheBytes() {
        var hasher = CacheKeyHasher(seed: Self.referenceSeed)
        let empty = hasher.finalize()
        #expect(empty.description == "a3817f04ba25a8e66df67214c7550293")
        #expect(hasher.finalize() == empty)
        hasher.write(0)
        #expect(hasher.finalize().bytes == Self.sip128Vectors[1].bytes)
    }

    @Test func partsAreLengthPrefixedAndTheSeedMatters() {
        func hash(_ parts: [String], seed: (UInt64, UInt64) = (1, 2)) -> CacheKeyHash {
            var hasher = CacheKeyHasher(seed: seed)
            for part in parts { hasher.combine(part) }
            return hasher.finalize()
        }
        #expect(hash(["ab", "c"]) != hash(["a", "bc"]))
        #expect(hash(["", "x"]) != hash(["x", ""]))
        #expect(hash(["GET", "/a"]) == hash(["GET", "/a"]))
        #expect(hash(["GET", "/a"]) != hash(["GET", "/a"], seed: (1, 3)))
        #expect(hash(["GET", "/a"]) != hash(["GET", "/a"], seed: (2, 2)))
    }

    // MARK: HTTP-date

    /// RFC 9110 §5.6.7's example instant, in its three forms.
    static let rfcInstant: Int64 = 784_111_777
    static let now: Int64 = 1_796_598_000  // Sun, 06 Dec 2026 23:00:00 GMT

    @Test(arguments: [
        "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  // obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  // ANSI C's asctime() format
        "Sun Nov 06 08:49:37 1994",  // asctime with a zero instead of the pad, as some servers send
    ])
    func theThreeFormsOfTheRFCExampleParse(text: String) {
        #expect(HTTPDate.parse(text, now: Self.now) == Self.rfcInstant)
    }

    @Test(arguments: [
        "", "0", "-1", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC", "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 29 Feb 1900 00:00:00 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT ", "Sun,06 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT", "Sunday, 06 Nov 1994 08:49:37 GMT", "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94", "Sun Foo  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:3a GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT", "Tuesday, 29-Feb-01 00:00:00 GMT",
    ])
    func anythingElseIsNotADate(text: String) {
        #expect(HTTPDate.parse(text, now: Self.now) == nil)
    }

    @Test func leapDaysLeapSecondsAndTheEpoch() {
        #expect(HTTPDate.parse("Tue, 29 Feb 2000 00:00:00 GMT", now: Self.now) == 951_782_400)
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT", now: Self.now) == 0)
        #expect(HTTPDate.parse("Wed, 31 Dec 1969 23:59:59 GMT", now: Self.now) == -1)
        // A leap second is read as the second before it.
        #expect(HTTPDate.parse("Sat, 31 Dec 2016 23:59:60 GMT", now: Self.now) == 1_483_228_799)
    }

    @Test func anRFC850YearMoreThanFiftyYearsAheadIsInThePast() {
        // In 2026: "76" is 2076 (50 years ahead, not more), "77" is 1977.
        #expect(HTTPDate.parse("Wednesday, 01-Jan-76 00:00:00 GMT", now: Self.now) == 3_345_062_400)
        #expect(HTTPDate.parse("Saturday, 01-Jan-77 00:00:00 GMT", now: Self.now) == 220_924_800)
        #expect(HTTPDate.parse("Thursday, 01-Jan-26 00:00:00 GMT", now: Self.now) == 1_767_225_600)
    }

    @Test func formattingIsIMFFixdateAndRoundTrips() {
        #expect(HTTPDate.format(Self.rfcInstant) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(-1) == "Wed, 31 Dec 1969 23:59:59 GMT")
        #expect(HTTPDate.format(951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        for seconds in stride(from: Int64(-86_400 * 800), to: 4_000_000_000, by: 7_777_777) {
            #expect(HTTPDate.parse(HTTPDate.format(seconds), now: Self.now) == seconds)
        }
    }
}
