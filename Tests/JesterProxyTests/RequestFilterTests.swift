// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

// MARK: The filter run (pure: no channel)

/// A filter whose answer the test scripts: now, later through `resume`, or "later" but from inside `apply`.
private final class ScriptedFilter: RequestFilter {
    enum Script {
        case now(FilterVerdict)
        case later
        case resumedWhileApplying(FilterVerdict)
    }

    let name: String
    let script: Script
    private(set) var calls = 0
    /// The context of the run this filter waits in (`.later`): the test resumes it.
    var waitingIn: FilterContext?

    init(_ name: String, _ script: Script) {
        self.name = name
        self.script = script
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        calls += 1
        context.responseFields.append(LocalResponse.Field("X-Ran", name))
        switch script {
        case .now(let verdict): return .decided(verdict)
        case .later:
            waitingIn = context
            return .suspended
        case .resumedWhileApplying(let verdict):
            // A cache answering before the filter returned (the Redis limiter's over-limit cache does this).
            context.resume(verdict)
            return .suspended
        }
    }

    func resume(_ verdict: FilterVerdict) {
        waitingIn?.resume(verdict)
    }
}

func input() -> FilterInput {
    var head = HTTPHead()
    let bytes = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _ = bytes.withUnsafeReadableBytes { HTTPHeadParser(limits: .init()).parseRequest($0, into: &head) }
    let route = CompiledRoute(name: "r", maxBodySize: 0, action: .respond(head: ByteBuffer(), body: ByteBuffer()))
    return FilterInput(
        head: head, bytes: bytes, clientAddress: "127.0.0.1", clientIP: IPAddressBytes("127.0.0.1"), route: route,
        tls: nil, now: .now())
}

func filterContext(_ chain: FilterChain = .empty) -> FilterContext {
    FilterContext(chain: chain, input: input())
}

private func run(_ filters: [ScriptedFilter]) -> (FilterContext, FilterVerdict?, () -> FilterVerdict?) {
    var late: FilterVerdict?
    let context = filterContext(FilterChain(filters: filters))
    let verdict = context.start()
    if verdict == nil { context.onDecision = { late = $0 } }
    return (context, verdict, { late })
}

private func status(_ verdict: FilterVerdict?) -> Int? {
    switch verdict {
    case .proceed?: return 0
    case .respond(let response, _)?: return response.status
    case .fail(let status, _)?: return status
    case nil: return nil
    }
}

@Test func filtersRunInOrderAndTheFirstAnswerStopsTheChain() {
    let first = ScriptedFilter("first", .now(.proceed))
    let second = ScriptedFilter("second", .now(.fail(status: 403, reason: "no")))
    let third = ScriptedFilter("third", .now(.proceed))
    let (run, verdict, _) = run([first, second, third])
    #expect(status(verdict) == 403)
    #expect(run.responseFields.map { $0.value } == ["first", "second"])
    #expect(run.responseFields.map { $0.value } == ["first", "second"])
}

@Test func aWaitingFilterResumesTheChainOnce() {
    let waiting = ScriptedFilter("waiting", .later)
    let after = ScriptedFilter("after", .now(.proceed))
    let (_, verdict, late) = run([waiting, after])
    #expect(verdict == nil && after.calls == 0)
    waiting.resume(.proceed)
    #expect(status(late()) == 0 && after.calls == 1)
    // A second resume (a buggy filter) changes nothing.
    waiting.resume(.fail(status: 500, reason: "again"))
    #expect(status(late()) == 0 && after.calls == 1)
}

@Test func anAnswerGivenWhileTheFilterIsStillApplyingIsTakenSynchronously() {
    let cached = ScriptedFilter("cached", .resumedWhileApplying(.proceed))
    let refusing = ScriptedFilter("refusing", .resumedWhileApplying(.fail(status: 429, reason: "cached refusal")))
    let (_, verdict, late) = run([cached, refusing])
    #expect(status(verdict) == 429)
    #expect(late() == nil)
}

@Test func aCancelledRunIgnoresALateAnswer() {
    let waiting = ScriptedFilter("waiting", .later)
    let (run, _, late) = run([waiting])
    run.cancel()
    waiting.resume(.fail(status: 401, reason: "late"))
    #expect(late() == nil)
}

@Test func ipRulesDenyWinsAndAnAllowListExcludesTheRest() {
    let settings = IPRuleSettings(allow: ["10.0.0.0/8", "::1"], deny: ["10.9.0.0/16"])
    let rules = IPRulesFilter(name: "office", settings: settings)
    #expect(status(rules.decide(IPAddressBytes("10.1.2.3"))) == 0)
    #expect(status(rules.decide(IPAddressBytes("::1"))) == 0)
    #expect(status(rules.decide(IPAddressBytes("::ffff:10.1.2.3"))) == 0)
    #expect(status(rules.decide(IPAddressBytes("10.9.0.1"))) == 403)
    #expect(status(rules.decide(IPAddressBytes("192.0.2.1"))) == 403)
    #expect(status(rules.decide(nil)) == 403)
}

// MARK: Filters on an HTTP/1.1 connection (EmbeddedChannel)

private final class Harness {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel

    init(_ body: String) throws {
        let configuration = try ConfigLoader(environment: [:]).load(text: """
            [[listeners]]
            name = "main"
            address = "127.0.0.1:8080"
            \(body)
            """, file: "test.toml")
        let runtime = WorkerRuntime(configuration: configuration, eventLoop: loop, slot: 0)
        channel = EmbeddedChannel(handler: DownstreamConnection(runtime: runtime, listener: "main"), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    func exchange(_ text: String) throws -> String {
        try channel.writeInbound(ByteBuffer(string: text))
        return try received()
    }

    func received() throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }
}

private let htpasswd = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../Fixtures/auth/htpasswd").standardized.path

@Test func aRefusalKeepsTheConnectionWhenNoBodyIsLeftUnread() throws {
    let harness = try Harness("""
        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]

        [[routes]]
        filters = ["office"]
        respond = { status = 200, body = "inside\\n" }
        """)
    let refused = try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(refused.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
    #expect(!refused.contains("inside") && !refused.contains("Connection: close"))
    #expect(harness.channel.isActive)
    // A refused request with a body it never read ends the connection: the body cannot be told from a request.
    let withBody = try harness.exchange("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    #expect(withBody.hasPrefix("HTTP/1.1 403 Forbidden\r\n") && withBody.contains("Connection: close"))
}

@Test func aRateLimitAnswersWithRetryAfterAndRateLimitFields() throws {
    let harness = try Harness("""
        [filters.limit]
        kind = "rate_limit"
        rate = 2
        per = "1m"
        burst = 1

        [[routes]]
        filters = ["limit"]
        respond = { status = 200, body = "ok\\n" }
        """)
    let first = try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(first.hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(first.contains("RateLimit-Policy: \"limit\";q=2;w=60;jester-burst=1\r\n"))
    #expect(first.contains("RateLimit: \"limit\";r=1;t="))
    #expect(try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 200 OK\r\n"))
    let refused = try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(refused.hasPrefix("HTTP/1.1 429 Too Many Requests\r\n"))
    #expect(refused.contains("Retry-After: 30\r\n") || refused.contains("Retry-After: 29\r\n"))
    #expect(refused.contains("RateLimit: \"limit\";r=0;t="))
    #expect(harness.channel.isActive)
}

@Test func aPasswordHashedOffTheLoopAnswersWhenItIsDone() throws {
    let harness = try Harness("""
        [filters.staff]
        kind = "basic_auth"
        realm = "staff"
        htpasswd = "\(htpasswd)"

        [[routes]]
        filters = ["staff"]
        respond = { status = 200, body = "welcome\\n" }
        """)
    // dave's bcrypt hash is checked on the thread pool; nothing is answered until it is back on the loop.
    let credentials = Data("dave:dave-secret".utf8).base64EncodedString()
    var answer = try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \(credentials)\r\n\r\n")
    let deadline = Date().addingTimeInterval(10)
    while answer.isEmpty, Date() < deadline {
        Thread.sleep(forTimeInterval: 0.005)
        harness.loop.run()
        answer = try harness.received()
    }
    #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n") && answer.hasSuffix("welcome\n"))
    // Now from the cache, on the loop: answered at once.
    let again = try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \(credentials)\r\n\r\n")
    #expect(again.hasPrefix("HTTP/1.1 200 OK\r\n"))
    let wrong = Data("dave:nope".utf8).base64EncodedString()
    answer = try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \(wrong)\r\n\r\n")
    while answer.isEmpty, Date() < deadline {
        Thread.sleep(forTimeInterval: 0.005)
        harness.loop.run()
        answer = try harness.received()
    }
    #expect(answer.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
    #expect(answer.contains("WWW-Authenticate: Basic realm=\"staff\""))
}

@Test func aDelayedRequestWaitsForItsTurnAndAClientThatLeavesMeanwhileIsNotAnswered() throws {
    // Delay mode: one a minute, the next two wait for their turns instead of being refused. (The limiter reads
    // the real clock, so no time passes for it here: the second waits a minute, the third two; the waits run on the
    // embedded loop's clock, so the test does not depend on a thread's timing.)
    let harness = try Harness("""
        [filters.slow]
        kind = "rate_limit"
        rate = 1
        per = "1m"
        delay = 2

        [[routes]]
        filters = ["slow"]
        respond = { status = 200, body = "ok\\n" }
        """)
    #expect(try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 200 OK\r\n"))
    // The second waits its turn (a minute), then is answered.
    #expect(try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").isEmpty)
    harness.loop.advanceTime(by: .seconds(59))
    #expect(try harness.received().isEmpty)
    harness.loop.advanceTime(by: .seconds(2))
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    // The third waits two minutes, but the client leaves: nothing is written when its turn comes.
    #expect(try harness.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").isEmpty)
    try harness.channel.close().wait()
    harness.loop.advanceTime(by: .seconds(300))
    #expect(try harness.received().isEmpty)
}
