// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

/// Every coding, in the default order of preference.
private let all: [ContentCoding] = [.br, .zstd, .gzip, .deflate]

/// `Accept-Encoding` as clients send it (RFC 9110 §12.5.3), and the coding chosen from it among a route's.
@Suite struct AcceptEncodingTests {
    @Test(arguments: [
        // Browsers weigh everything alike: the server's order decides.
        ("gzip, deflate, br, zstd", all, ContentCoding.br),
        ("gzip, deflate, br", all, .br),
        ("gzip, deflate", all, .gzip),
        ("deflate, gzip", all, .gzip),
        ("gzip", [ContentCoding.zstd, .deflate], nil),
        ("deflate", [ContentCoding.br, .gzip, .deflate], .deflate),
        // The route's order, not the default one.
        ("gzip, br", [ContentCoding.gzip, .br], .gzip),
        // Weights: the highest wins, whatever the server prefers.
        ("br;q=0.5, gzip", all, .gzip),
        ("br;q=0.5, gzip;q=0.8", all, .gzip),
        ("gzip;q=0.001, br;q=0.002", all, .br),
        ("gzip;q=0.9", all, .gzip),
        // Refusals.
        ("br;q=0, gzip", all, .gzip),
        ("br;q=0, gzip;q=0", all, nil),
        ("gzip;q=0.000", all, nil),
        // `*` covers what is not listed; a listed coding keeps its own weight.
        ("*", all, .br),
        ("*;q=0.5", all, .br),
        ("br;q=0, *", all, .zstd),
        ("*;q=0", all, nil),
        ("*;q=0, gzip", all, .gzip),
        ("gzip;q=0.2, *;q=0.5", all, .br),
        // Identity named with a higher weight keeps the body as it is; implicit identity does not compete.
        ("identity, gzip;q=0.5", all, nil),
        ("identity;q=0.5, gzip", all, .gzip),
        ("identity;q=0.5, gzip;q=0.5", all, .gzip),
        ("identity", all, nil),
        // Case, whitespace, x-gzip, several field lines joined.
        ("GZIP", all, .gzip),
        ("  Br ; Q=1.0 ,gzip", all, .br),
        ("x-gzip", all, .gzip),
        ("gzip\t;\tq=0.3 , br;q=0.2", all, .gzip),
        ("br;q=0.1,, ,gzip;q=0.2", all, .gzip),
        // Malformed members are skipped, the rest count.
        ("br;q=2, gzip", all, .gzip),
        ("br;q=1.001, gzip;q=0.5", all, .gzip),
        ("br;q=0.0001, gzip;q=0.5", all, .gzip),
        ("br;level=9, gzip;q=0.5", all, .gzip),
        ("br;q=, gzip;q=0.5", all, .gzip),
        ("br;q=0.5;q=0.6, gzip;q=0.4", all, .gzip),
        (";q=1, gzip", all, .gzip),
        ("b r, gzip;q=0.1", all, .gzip),
        ("br;q=.5, gzip;q=0.1", all, .gzip),
        ("garbage;;;=,", all, nil),
        // Codings Jester does not implement are ignored.
        ("compress, exi, gzip;q=0.1", all, .gzip),
        ("compress", all, nil),
        // The first weight of a coding listed twice holds.
        ("gzip;q=0, gzip", all, nil),
        ("gzip, gzip;q=0", all, .gzip),
        // An empty value: the client wants no coding.
        ("", all, nil),
    ] as [(String, [ContentCoding], ContentCoding?)])
    func choosesTheCoding(field: String, enabled: [ContentCoding], expected: ContentCoding?) {
        #expect(AcceptEncoding(field).preferredCoding(among: enabled) == expected, "\(field)")
    }

    @Test func withoutTheFieldTheBodyGoesAsItIs() {
        #expect(!AcceptEncoding.absent.isPresent)
        #expect(AcceptEncoding.absent.preferredCoding(among: all) == nil)
        #expect(AcceptEncoding.absent.acceptsIdentity)
        #expect(AcceptEncoding("").isPresent)
    }

    @Test func severalFieldLinesAreOneList() {
        var accept = AcceptEncoding("br;q=0")
        accept.add("gzip;q=0.5")
        #expect(accept.preferredCoding(among: all) == .gzip)
        accept.add("br")  // too late: the first weight of br holds
        #expect(accept.weight(of: .br) == 0)
    }

    @Test(arguments: [
        ("gzip;q=0.5", ContentCoding.gzip, 500), ("gzip;q=1", .gzip, 1000), ("gzip;q=1.000", .gzip, 1000),
        ("gzip;q=0.25", .gzip, 250), ("gzip;q=0.125", .gzip, 125), ("gzip;q=0", .gzip, 0), ("gzip", .br, 0),
        ("*;q=0.3", .zstd, 300), ("zstd;q=0.7, *;q=0.3", .zstd, 700),
    ])
    func weightsAreThousandths(field: String, coding: ContentCoding, weight: Int) {
        #expect(AcceptEncoding(field).weight(of: coding) == weight, "\(field)")
    }

    @Test(arguments: [
        ("gzip", true), ("identity;q=0", false), ("*;q=0", false), ("*;q=0, identity", true),
        ("identity;q=0, *", false), ("identity;q=0.1, *;q=0", true), ("", true),
    ])
    func identityIsAcceptableUnlessRefused(field: String, accepts: Bool) {
        #expect(AcceptEncoding(field).acceptsIdentity == accepts, "\(field)")
    }

    @Test func tokensNameTheirCodings() {
        for coding in ContentCoding.allCases {
            #expect(ContentCoding(token: coding.token) == coding)
            #expect(ContentCoding(token: coding.token.uppercased()) == coding)
            #expect(coding.levelRange.contains(coding.defaultLevel))
        }
        #expect(ContentCoding(token: "x-gzip") == .gzip)
        #expect(ContentCoding(token: "identity") == nil)
        #expect(ContentCoding(token: "compress") == nil)
        var levels = CompressionLevels()
        levels[.br] = 9
        #expect(levels.br == 9 && levels[.gzip] == ContentCoding.gzip.defaultLevel)
    }
}
