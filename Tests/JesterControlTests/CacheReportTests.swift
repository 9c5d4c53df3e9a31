// SPDX-License-Identifier: Apache-2.0
import JesterControl
import Testing

/// The cache's control messages as they travel, frozen: the master's side is filled in separately (issue 21), and
/// a jesterctl of this release must read what it sends.
@Test func cacheMessagesKeepTheirWireForm() throws {
    let cases: [(json: String, message: ControlMessage)] = [
        (#"{"cacheStatus":{}}"#, .cacheStatus),
        (#"{"cachePurge":{"_0":{"key":{"_0":"https://example.com/a?b"}}}}"#,
         .cachePurge(.key("https://example.com/a?b"))),
        (#"{"cachePurge":{"_0":{"prefix":{"_0":"https://example.com/img/"}}}}"#,
         .cachePurge(.prefix("https://example.com/img/"))),
        (#"{"cachePurged":{"_0":{"removed":3}}}"#, .cachePurged(CachePurgeResult(removed: 3))),
    ]
    for (json, message) in cases {
        var codec = ControlFrameCodec()
        let payload = Array(#"{"version":1,"message":"#.utf8) + Array(json.utf8) + Array("}".utf8)
        codec.append([0, 0, 0, UInt8(payload.count)] + payload)
        #expect(try codec.next() == message)
        var back = ControlFrameCodec()
        back.append(ControlFrameCodec.encode(message))
        #expect(try back.next() == message)
    }
}

@Test func cacheStatusComputesItsHitRatioAndReadsForPeople() {
    let empty = CacheStatusReport(
        bytesUsed: 0, byteBudget: 0, entries: 0, hits: 0, misses: 0, stores: 0, evictions: 0, collapsed: 0)
    #expect(empty.hitRatio == 0)
    let report = CacheStatusReport(
        bytesUsed: 3 << 29, byteBudget: 4 << 30, entries: 1200, hits: 873, misses: 127, stores: 130, evictions: 4,
        collapsed: 99)
    #expect(report.hitRatio == 0.873)
    let lines = CacheStatusText.lines(report)
    #expect(lines.first == "size        1.5 GiB of 4.0 GiB (37.5%)")
    #expect(lines.contains("hit ratio   87.3%"))
    #expect(lines.contains("collapsed   99"))
    #expect(CacheStatusText.bytes(300) == "300 B")
    #expect(CacheStatusText.bytes(512 * 1024) == "512.0 KiB")
    #expect(CacheStatusText.lines(empty).first == "size        0 B of 0 B")
}
