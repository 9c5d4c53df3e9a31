// SPDX-License-Identifier: Apache-2.0
import JesterCore
@testable import JesterHTTP3
import JesterSystem
import NIOCore
import Testing

@testable import JesterProxy

// HTTP/3 0-RTT (`http3_early_data`): which early requests go upstream at once, and the replay register workers
// share. The live tier (Tests/Live/test_http3_early_data.py) runs both against aioquic.

private func exchange(_ request: String) -> RequestExchange {
    var exchange = RequestExchange()
    let bytes = ByteBuffer(string: request)
    exchange.headBytes = bytes
    _ = bytes.withUnsafeReadableBytes { HTTPHeadParser(limits: .init()).parseRequest($0, into: &exchange.head) }
    return exchange
}

@Test(arguments: [
    ("GET", RequestExchange.EarlyDataVerdict.forwardEarly), ("HEAD", .forwardEarly), ("OPTIONS", .forwardEarly),
    ("TRACE", .forwardEarly), ("POST", .awaitHandshake), ("PUT", .awaitHandshake), ("DELETE", .awaitHandshake),
    ("PATCH", .awaitHandshake),
])
func anEarlyRequestGoesAtOnceOnlyWhenItsMethodIsSafe(method: String, verdict: RequestExchange.EarlyDataVerdict) {
    var early = exchange("\(method) /x HTTP/1.1\r\nHost: a\r\n\r\n")
    #expect(early.earlyDataVerdict(handshakeComplete: false) == verdict)
    // After the handshake nothing is early, whatever the method.
    #expect(early.earlyDataVerdict(handshakeComplete: true) == .forward)
}

@Test func theEarlyDataFieldIsAddedOnlyToRequestsSentEarlyAndNeverTwice() throws {
    let harness = try ExchangeHarness("""
        [upstreams.app]
        targets = ["127.0.0.1:9"]

        [[routes]]
        path_prefix = "/"
        upstream = "app"
        """)
    let route = CompiledRoute(name: "r", maxBodySize: 0, action: .respond(head: ByteBuffer(), body: ByteBuffer()))
    func rendered(_ request: String, early: Bool) -> String {
        let exchange = exchange(request)
        let upstream = UpstreamRequest(
            runtime: harness.runtime, route: route, clientAddress: "127.0.0.1", tls: nil, clientSubjectHeader: nil,
            chunked: false, upgrade: false, earlyData: early)
        let head = exchange.headBytes!.withUnsafeReadableBytes {
            upstream.renderHead($0, head: exchange.head, target: "app", requestID: .none, allocator: .init())
        }
        return String(buffer: head)
    }
    #expect(rendered("GET / HTTP/1.1\r\nHost: a\r\n\r\n", early: true).contains("\r\nEarly-Data: 1\r\n"))
    #expect(!rendered("GET / HTTP/1.1\r\nHost: a\r\n\r\n", early: false).lowercased().contains("early-data"))
    // A client's own field is forwarded as it came (RFC 8470 §5.1), not doubled.
    let own = rendered("GET / HTTP/1.1\r\nHost: a\r\nEarly-Data: 1\r\n\r\n", early: true)
    #expect(own.lowercased().components(separatedBy: "early-data").count == 2, "\(own)")
}

@Test func theSharedRegisterRefusesACopyUntilItsWindowEnds() throws {
    let table = try RateLimitTable.create(slots: 64)
    // Two workers: two registers over one table (a worker's own `attach` of the master's memfd).
    let first = SharedReplayRegister(table: table)
    let second = SharedReplayRegister(table: try RateLimitTable.attach(fd: table.fd))
    let binder: [UInt8] = Array(0..<32)
    let other: [UInt8] = Array(1..<33)
    let window: Int64 = 10_000_000_000
    binder.withUnsafeBytes { binder in
        #expect(first.recordFirstUse(of: binder, now: 1_000, window: window))
        // The copy, at another worker, within the window: refused.
        #expect(!second.recordFirstUse(of: binder, now: 2_000, window: window))
        #expect(!first.recordFirstUse(of: binder, now: 3_000, window: window))
        // After the window GnuTLS refuses the ticket's age anyway; the record has expired and may be reused.
        #expect(second.recordFirstUse(of: binder, now: 1_000 + window + 1, window: window))
    }
    other.withUnsafeBytes { other in
        #expect(second.recordFirstUse(of: other, now: 2_000, window: window))
    }
}

@Test func theProcessRegisterRefusesACopyToo() {
    let register = ProcessReplayRegister()
    let binder: [UInt8] = Array(repeating: 7, count: 32)
    binder.withUnsafeBytes { binder in
        #expect(register.recordFirstUse(of: binder, now: 0, window: 100))
        #expect(!register.recordFirstUse(of: binder, now: 50, window: 100))
        #expect(register.recordFirstUse(of: binder, now: 101, window: 100))
    }
}

@Test func gnutlsWindowPrefixIsNotPartOfTheRecord() throws {
    // GnuTLS's key is its process's window start (12 bytes), then the binder: the same ClientHello seen by a
    // process whose window started elsewhere must still be the same record.
    let resumption = try QUICSessionResumption(
        keys: .random(), context: [], rotatingSecret: nil, ticketLifetimeSeconds: 3600,
        replayRegister: ProcessReplayRegister())
    let binder: [UInt8] = Array(repeating: 9, count: 32)
    (Array(repeating: 1, count: 12) + binder).withUnsafeBytes { #expect(resumption.isFirstUse(key: $0)) }
    (Array(repeating: 2, count: 12) + binder).withUnsafeBytes { #expect(!resumption.isFirstUse(key: $0)) }
    (Array(repeating: 2, count: 12) + Array(repeating: 8, count: 32)).withUnsafeBytes { #expect(resumption.isFirstUse(key: $0)) }
}

@Test func ticketKeysFollowTheListenersPolicyAndTheRotation() {
    let keys = QUICKeys.random()
    let open = QUICSessionResumption.ticketKey(from: keys, context: Array("client_certificates=off".utf8), rotatingSecret: [1])
    let strict = QUICSessionResumption.ticketKey(
        from: keys, context: Array("client_certificates=required".utf8), rotatingSecret: [1])
    let rotated = QUICSessionResumption.ticketKey(from: keys, context: Array("client_certificates=off".utf8), rotatingSecret: [2])
    #expect(open.count == 64 && Set([open, strict, rotated]).count == 3)
    // The same inputs in another process: the same key (tickets resume on every worker).
    #expect(open == QUICSessionResumption.ticketKey(from: keys, context: Array("client_certificates=off".utf8), rotatingSecret: [1]))
}
