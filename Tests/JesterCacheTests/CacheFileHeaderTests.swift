// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// The body file's header: what a hit reads back must be what was stored, and a damaged or foreign file must be
/// refused, never half-read.
@Suite struct CacheFileHeaderTests {
    static func sample() -> StoredResponse {
        var request = LookupTests.request([("Accept-Encoding", "gzip"), ("Accept", "text/html")])
        request.query = "b=2&a=1"
        var policy = CachePolicy()
        policy.keyFields = ["x-tenant", "accept"]
        guard case .cacheable(let plan) = request.classify(policy: policy),
            case .store(let response) = StoreDecision.decide(
                request: request, plan: plan, status: 200,
                fields: [
                    ("Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600"),
                    ("ETag", "\"v1\""), ("Vary", "Accept-Encoding"), ("Content-Type", "text/plain; é=ü"),
                ], requestTime: LookupTests.stored - 1, responseTime: LookupTests.stored, policy: policy)
        else { preconditionFailure("not stored") }
        return response
    }

    @Test func roundTrip() throws {
        let stored = Self.sample()
        var bytes = CacheFileHeader.encode(stored)
        let headerLength = bytes.count
        bytes += Array("the body".utf8)
        #expect(CacheFileHeader.length(prefix: bytes) == headerLength)
        let (decoded, length) = try CacheFileHeader.decode(bytes)
        #expect(decoded == stored)
        #expect(length == headerLength)
        #expect(decoded.key.query == "b=2&a=1")
        #expect(decoded.varyValues.map(\.name) == ["accept-encoding"])
        #expect(decoded.freshness.staleWhileRevalidate == 30)
    }

    @Test func absentValuesStayAbsent() throws {
        var stored = Self.sample()
        stored.key.query = nil
        stored.key.fields = [VaryValue(name: "x-tenant", value: nil), VaryValue(name: "accept", value: "")]
        let (decoded, _) = try CacheFileHeader.decode(CacheFileHeader.encode(stored))
        #expect(decoded.key.query == nil)
        #expect(decoded.key.fields == stored.key.fields)
    }

    @Test func shortDamagedAndForeignFilesAreRefused() {
        let bytes = CacheFileHeader.encode(Self.sample())
        #expect(throws: CacheFileHeader.ReadError.truncated(needed: bytes.count)) {
            try CacheFileHeader.decode(Array(bytes.dropLast(3)))
        }
        #expect(throws: CacheFileHeader.ReadError.truncated(needed: 8)) { try CacheFileHeader.decode([0x4A]) }
        var foreign = bytes
        foreign[3] = UInt8(ascii: "2")  // another version's file
        #expect(throws: CacheFileHeader.ReadError.wrongMagic) { try CacheFileHeader.decode(foreign) }
        #expect(CacheFileHeader.length(prefix: foreign) == nil)
        // A string length running past the header.
        var damaged = bytes
        damaged[8] = 0xFF
        #expect(throws: CacheFileHeader.ReadError.malformed) { try CacheFileHeader.decode(damaged) }
        // Invalid UTF-8 in a string.
        var invalid = bytes
        invalid[12] = 0xFF
        #expect(throws: CacheFileHeader.ReadError.malformed) { try CacheFileHeader.decode(invalid) }
        // A header length beyond the limit.
        var huge = bytes
        huge[7] = 0x7F
        #expect(CacheFileHeader.length(prefix: huge) == nil)
    }
}
