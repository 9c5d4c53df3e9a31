// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import JesterProxy

/// A real `redis-server` on a free loopback port, for one test: no persistence, killed when the test ends.
/// `arguments` go on its command line (`--requirepass`); `password` is what `command` authenticates with.
final class RedisServer: @unchecked Sendable {
    static let binary = "/usr/bin/redis-server"
    static let cli = "/usr/bin/redis-cli"
    static var isInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: binary) && FileManager.default.isExecutableFile(atPath: cli)
    }

    let port: Int
    let arguments: [String]
    let password: String?
    private var process: Process?

    init(arguments: [String] = [], password: String? = nil) throws {
        port = try Self.freePort()
        self.arguments = arguments
        self.password = password
        try start()
    }

    deinit { kill() }

    var address: SocketAddress { try! SocketAddress(ipAddress: "127.0.0.1", port: port) }

    /// Starts the server (again, on the same port) and waits until it answers PING.
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        for _ in 0..<250 {
            if (try? command("PING")) == "PONG" { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw CocoaError(.fileReadUnknown)
    }

    /// SIGKILL, as a crash would: no goodbye on the connections.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// SIGSTOP or SIGCONT: a Redis that accepts connections and answers nothing.
    func signal(_ signal: Int32) {
        if let process { Foundation.kill(process.processIdentifier, signal) }
    }

    /// One command through redis-cli; its output, trimmed.
    @discardableResult
    func command(_ arguments: String...) throws -> String {
        let cli = Process()
        cli.executableURL = URL(fileURLWithPath: Self.cli)
        cli.arguments = ["-p", "\(port)"] + (password.map { ["--no-auth-warning", "-a", $0] } ?? []) + arguments
        let output = Pipe()
        cli.standardOutput = output
        cli.standardError = FileHandle.nullDevice
        try cli.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        cli.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// How many times the server ran `name` (from INFO commandstats): round trips, counted by Redis itself.
    func calls(_ name: String) throws -> Int {
        let stats = try command("INFO", "commandstats")
        for line in stats.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_\(name):calls=") {
            return Int(line.dropFirst("cmdstat_\(name):calls=".count).prefix { $0.isNumber }) ?? 0
        }
        return 0
    }

    /// Script runs of either kind.
    func scriptRuns() throws -> Int { try calls("evalsha") + calls("eval") }

    private static func freePort() throws -> Int {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? channel.close().wait() }
        return channel.localAddress!.port!
    }
}

/// The cluster-scope limiter against a real Redis: exact counts, two instances sharing a limit, Redis killed,
/// stopped, restarted and flushed, and the over-limit cache.
@Suite(.serialized, .enabled(if: RedisServer.isInstalled, "redis-server and redis-cli are not installed"))
final class RedisRateLimiterTests {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let redis: RedisServer
    var limiters: [RedisRateLimiter] = []

    init() throws {
        redis = try RedisServer()
    }

    deinit {
        for limiter in limiters { limiter.shutdown() }
        try? group.syncShutdownGracefully()
        redis.kill()
    }

    private func makeLimiter(timeout: Duration = .milliseconds(200), poolSize: Int = 2) -> RedisRateLimiter {
        let limiter = RedisRateLimiter(
            eventLoop: group.next(), host: "127.0.0.1", port: redis.port, poolSize: poolSize, timeout: timeout,
            keyPrefix: "jester:test:", logger: Logger(label: "test"))
        limiters.append(limiter)
        return limiter
    }

    private func check(
        _ limiter: RedisRateLimiter, _ key: String, rate: Int = 10, period: Duration = .seconds(3600), burst: Int = 4,
        delay: Int = .max
    ) async -> ClusterRateDecision {
        await Self.check(limiter, key, rate: rate, period: period, burst: burst, delay: delay)
    }

    /// One check on the limiter's loop, awaited.
    static func check(
        _ limiter: RedisRateLimiter, _ key: String, rate: Int, period: Duration, burst: Int, delay: Int = .max
    ) async -> ClusterRateDecision {
        await withCheckedContinuation { continuation in
            limiter.eventLoop.execute {
                limiter.check(key: key, rate: rate, period: period, burst: burst, delay: delay, now: .now()) {
                    continuation.resume(returning: $0)
                }
            }
        }
    }

    @Test func allowsExactlyBurstPlusOneThenRefusesLikeGCRA() async throws {
        let limiter = makeLimiter()
        // 10 an hour (T = 6 min: no allowance comes back while a loaded machine runs the checks) with 4 at once:
        // the in-process GCRA's answers for the same requests at one moment.
        let gcra = GCRA(rate: 10, period: .seconds(3600), burst: 4)
        var tat: Int64?
        // Redis counts on its own clock, so the answers run behind the one-moment model by the time the checks
        // take (a loaded machine running the suite in parallel took seconds): allowed slack, that plus 500 ms.
        let started = ContinuousClock.now
        func slack() -> Duration { started.duration(to: .now) + .milliseconds(500) }
        for _ in 0..<7 {
            let (newTAT, expected) = gcra.decide(tat: tat, now: 0)
            tat = newTAT ?? tat
            let decision = await check(limiter, "client-a")
            switch (decision, expected) {
            case (.allow(let remaining, let resetAfter), .allow(let expectedRemaining, let expectedReset)):
                #expect(remaining == expectedRemaining)
                #expect(resetAfter <= expectedReset && resetAfter > expectedReset - slack())
            case (.refuse(let retryAfter), .refuse(let expectedRetry)):
                #expect(retryAfter <= expectedRetry && retryAfter > expectedRetry - slack())
            default:
                Issue.record("Redis said \(decision), GCRA says \(expected)")
            }
        }
        // Another key has its own allowance; the TAT is stored with an expiry of its relevance (30 min here).
        #expect(await check(limiter, "client-b") == .allow(remaining: 4, resetAfter: .seconds(360)))
        let ttl = try #require(Int(try redis.command("PTTL", "jester:test:client-a")))
        let slackMilliseconds = Int(slack().components.seconds) * 1000
            + Int(slack().components.attoseconds / 1_000_000_000_000_000)
        #expect(ttl > 1_800_000 - slackMilliseconds && ttl <= 1_800_000)
    }

    @Test func delayModeWaitsLikeGCRAThenRefuses() async throws {
        let limiter = makeLimiter()
        // 10 an hour (T = 6 min), 4 tolerated of which 1 passes at once: nginx's burst=4 delay=1.
        let gcra = GCRA(rate: 10, period: .seconds(3600), burst: 4, delay: 1)
        var tat: Int64?
        var seen: [String] = []
        let started = ContinuousClock.now
        for _ in 0..<6 {
            let (newTAT, expected) = gcra.decide(tat: tat, now: 0)
            tat = newTAT ?? tat
            let decision = await check(limiter, "patient", burst: 4, delay: 1)
            switch (decision, expected) {
            case (.allow(let remaining, _), .allow(let expectedRemaining, _)):
                #expect(remaining == expectedRemaining)
                seen.append("allow")
            case (.delay(let wait, let remaining), .delay(let expectedWait, let expectedRemaining)):
                // Redis's clock moved on a little since the first request: the wait is shorter by that much.
                let slack = started.duration(to: .now) + .milliseconds(500)
                #expect(wait <= expectedWait && wait > expectedWait - slack, "\(wait) for \(expectedWait)")
                #expect(remaining == expectedRemaining)
                seen.append("delay")
            case (.refuse, .refuse):
                seen.append("refuse")
            default:
                Issue.record("Redis said \(decision), GCRA says \(expected)")
            }
        }
        #expect(seen == ["allow", "allow", "delay", "delay", "delay", "refuse"])
        // Without delay mode nothing waits: the same limit passes five at once.
        for _ in 0..<5 {
            guard case .allow = await check(limiter, "impatient", burst: 4) else {
                Issue.record("a request waited or was refused within the burst")
                return
            }
        }
    }

    @Test func requestsSpacedByTheIntervalPassAgain() async throws {
        let limiter = makeLimiter()
        // One every 2 s, no burst: T = 2 s, long enough that a loaded machine's second check still falls inside it.
        guard case .allow(remaining: 0, _) = await check(limiter, "spaced", rate: 1, period: .seconds(2), burst: 0)
        else { Issue.record("first request refused"); return }
        guard case .refuse(let retryAfter) = await check(limiter, "spaced", rate: 1, period: .seconds(2), burst: 0)
        else { Issue.record("second request allowed"); return }
        #expect(retryAfter <= .seconds(2))
        try await Task.sleep(for: retryAfter + .milliseconds(10))
        guard case .allow = await check(limiter, "spaced", rate: 1, period: .seconds(2), burst: 0)
        else { Issue.record("request after the interval refused"); return }
    }

    @Test func twoInstancesShareOneLimit() async throws {
        let first = makeLimiter()
        let second = makeLimiter()
        #expect(first.eventLoop !== second.eventLoop)
        var allowed = 0
        for round in 0..<20 {
            if case .allow = await check(round % 2 == 0 ? first : second, "shared", burst: 5) { allowed += 1 }
        }
        #expect(allowed == 6)
        // Both learnt the refusal: each asked Redis once for it, then answered from its cache.
        #expect(first.roundTrips + second.roundTrips == 8)
        #expect(first.cacheHits + second.cacheHits == 12)
    }

    @Test func overLimitKeysAreAnsweredWithoutARoundTrip() async throws {
        let limiter = makeLimiter()
        #expect(await check(limiter, "hot", rate: 1, burst: 0) != .unavailable)
        guard case .refuse = await check(limiter, "hot", rate: 1, burst: 0) else {
            Issue.record("second request allowed")
            return
        }
        let before = try redis.scriptRuns()
        for _ in 0..<50 {
            guard case .refuse(let retryAfter) = await check(limiter, "hot", rate: 1, burst: 0) else {
                Issue.record("a cached refusal was not a refusal")
                return
            }
            #expect(retryAfter > .seconds(3599))
        }
        #expect(try redis.scriptRuns() == before)
        #expect(limiter.cacheHits == 50)
        // Other keys still go to Redis.
        #expect(await check(limiter, "cold", rate: 1, burst: 0) == .allow(remaining: 0, resetAfter: .seconds(3600)))
        #expect(try redis.scriptRuns() == before + 1)
    }

    @Test func scriptFlushIsRecoveredWithEval() async throws {
        let limiter = makeLimiter()
        guard case .allow(remaining: 4, _) = await check(limiter, "flushed") else {
            Issue.record("first request not allowed")
            return
        }
        // Let the connection's SCRIPT LOAD be answered, so checks use EVALSHA.
        _ = await check(limiter, "flushed")
        #expect(try redis.calls("evalsha") >= 1)
        #expect(try redis.command("SCRIPT", "FLUSH") == "OK")
        let evals = try redis.calls("eval")
        guard case .allow(remaining: 2, _) = await check(limiter, "flushed") else {
            Issue.record("the check after SCRIPT FLUSH failed")
            return
        }
        #expect(try redis.calls("eval") == evals + 1)
        // And the script is back for EVALSHA.
        let shas = try redis.calls("evalsha")
        guard case .allow(remaining: 1, _) = await check(limiter, "flushed") else {
            Issue.record("the check after the reload failed")
            return
        }
        #expect(try redis.calls("evalsha") == shas + 1)
    }

    @Test func aStoppedRedisCostsAtMostTheTimeout() async throws {
        let limiter = makeLimiter(timeout: .milliseconds(100))
        #expect(await check(limiter, "stopped") != .unavailable)
        redis.signal(SIGSTOP)
        defer { redis.signal(SIGCONT) }
        let clock = ContinuousClock()
        for _ in 0..<3 {
            let started = clock.now
            #expect(await check(limiter, "stopped") == .unavailable)
            let elapsed = clock.now - started
            #expect(elapsed >= .milliseconds(90) && elapsed < .milliseconds(250), "took \(elapsed)")
        }
        redis.signal(SIGCONT)
        // Once it answers again, so do the checks (on the same connection: it was never closed).
        guard case .allow = await check(limiter, "stopped") else {
            Issue.record("no answer after SIGCONT")
            return
        }
    }

    @Test func aKilledRedisGivesUnavailableAndARestartedOneGivesLimitsBack() async throws {
        let limiter = makeLimiter(timeout: .milliseconds(100))
        #expect(await check(limiter, "restart", burst: 1) == .allow(remaining: 1, resetAfter: .seconds(360)))
        redis.kill()
        let clock = ContinuousClock()
        for _ in 0..<20 {
            let started = clock.now
            #expect(await check(limiter, "restart", burst: 1) == .unavailable)
            #expect(clock.now - started < .milliseconds(250))
        }
        try redis.start()
        // Back within the reconnection backoff (at most 2 s between attempts).
        var decision = ClusterRateDecision.unavailable
        let started = clock.now
        while decision == .unavailable, clock.now - started < .seconds(4) {
            decision = await check(limiter, "restart", burst: 1)
            if decision == .unavailable { try await Task.sleep(for: .milliseconds(50)) }
        }
        // The restarted Redis lost its keys: a fresh allowance of 2, then refusals again.
        guard case .allow(remaining: 1, _) = decision else {
            Issue.record("after the restart: \(decision)")
            return
        }
        guard case .allow(remaining: 0, _) = await check(limiter, "restart", burst: 1),
            case .refuse = await check(limiter, "restart", burst: 1)
        else {
            Issue.record("the limit does not hold after the restart")
            return
        }
    }

    @Test func nothingListeningAnswersAtOnce() async throws {
        redis.kill()
        let limiter = makeLimiter(timeout: .milliseconds(500))
        let clock = ContinuousClock()
        let started = clock.now
        for _ in 0..<10 { #expect(await check(limiter, "nobody") == .unavailable) }
        // A refused connection is known down at once: not ten timeouts.
        #expect(clock.now - started < .milliseconds(400))
    }

    @Test func manyConcurrentChecksPipelineAndCountExactly() async throws {
        let limiter = makeLimiter(poolSize: 3)
        let decisions = await withTaskGroup(of: ClusterRateDecision.self) { group in
            for _ in 0..<200 {
                group.addTask { await Self.check(limiter, "crowd", rate: 100, period: .seconds(3600), burst: 49) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let allowed = decisions.filter { if case .allow = $0 { return true } else { return false } }.count
        #expect(allowed == 50)
        #expect(!decisions.contains(.unavailable))
    }
}

/// The limiter's pure parts: script arguments and replies, the over-limit cache, reporting and backoff.
@Suite struct RedisRateLimiterStateTests {
    @Test func scriptArgumentsFollowGCRA() {
        // D defaults to τ (nothing waits); with delay mode it is that many intervals, never more than τ.
        #expect(RedisGCRAScript.arguments(rate: 10, period: .seconds(60), burst: 4)
            == ["6000000", "24000000", "1", "24000000"])
        #expect(RedisGCRAScript.arguments(rate: 10, period: .seconds(60), burst: 4, delay: 1)
            == ["6000000", "24000000", "1", "6000000"])
        #expect(RedisGCRAScript.arguments(rate: 10, period: .seconds(60), burst: 4, delay: 9)[3] == "24000000")
        #expect(RedisGCRAScript.arguments(rate: 3, period: .seconds(1), burst: 0) == ["333333", "0", "1", "0"])
        let gcra = GCRA(rate: 3, period: .seconds(1), burst: 2)
        let arguments = RedisGCRAScript.arguments(rate: 3, period: .seconds(1), burst: 2)
        #expect(arguments[0] == String(gcra.emissionInterval / 1000))
        // Faster than one a microsecond is one a microsecond; absurd bursts stay within a Lua double.
        #expect(RedisGCRAScript.arguments(rate: 10_000_000, period: .seconds(1), burst: 0)[0] == "1")
        #expect(RedisGCRAScript.arguments(rate: 1, period: .seconds(1), burst: .max)[1] == String(1 << 53))
    }

    @Test func scriptRepliesBecomeDecisions() {
        func reply(_ numbers: Int64...) -> RESPValue { .array(numbers.map(RESPValue.integer)) }
        #expect(RedisGCRAScript.decision(from: reply(1, 3, 0, 1_500_000, 0))
            == .allow(remaining: 3, resetAfter: .milliseconds(1500)))
        #expect(RedisGCRAScript.decision(from: reply(1, 1, 0, 1_500_000, 700_000))
            == .delay(.milliseconds(700), remaining: 1))
        #expect(RedisGCRAScript.decision(from: reply(0, 0, 250, 9, 0)) == .refuse(retryAfter: .microseconds(250)))
        #expect(RedisGCRAScript.decision(from: .error("ERR boom")) == nil)
        #expect(RedisGCRAScript.decision(from: reply(1, 3)) == nil)
        // The four-number reply of the script before delay mode is not taken for an answer.
        #expect(RedisGCRAScript.decision(from: reply(1, 3, 0, 1_500_000)) == nil)
        #expect(RedisGCRAScript.decision(from: reply(2, 0, 0, 0, 0)) == nil)
        #expect(RESPValue.error("NOSCRIPT No matching script.").errorKind == "NOSCRIPT")
    }

    @Test func overLimitCacheExpiresAndStaysBounded() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var cache = OverLimitCache(capacity: 3)
        cache.insert("a", until: start + .seconds(2), now: start)
        #expect(cache.refusal(for: "a", now: start + .seconds(1)) == .refuse(retryAfter: .seconds(1)))
        #expect(cache.refusal(for: "b", now: start) == nil)
        #expect(cache.refusal(for: "a", now: start + .seconds(2)) == nil)
        #expect(cache.count == 0)
        // Full of live keys: one goes, the new one is kept, the size holds.
        for key in ["a", "b", "c", "d"] { cache.insert(key, until: start + .seconds(10), now: start) }
        #expect(cache.count == 3)
        #expect(cache.refusal(for: "d", now: start) != nil)
        // Expired entries are dropped first.
        cache.insert("e", until: start + .seconds(30), now: start + .seconds(20))
        #expect(cache.count == 1)
    }

    @Test func unavailabilityIsReportedOncePerInterval() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var report = UnavailabilityReport(interval: .seconds(10))
        #expect(report.record(reason: "connect failed", affected: 1, now: start)
            == .init(affected: 1, reason: "connect failed", seconds: 0))
        for second in 1...9 {
            #expect(report.record(reason: nil, affected: 100, now: start + .seconds(Int64(second))) == nil)
        }
        #expect(report.nextReport == start + .seconds(10))
        #expect(report.flush(now: start + .seconds(9)) == nil)
        #expect(report.flush(now: start + .seconds(10)) == .init(affected: 900, reason: "connect failed", seconds: 9))
        #expect(report.nextReport == nil)
        // Background reconnection failures alone are not repeated every interval.
        #expect(report.record(reason: "connect failed", affected: 0, now: start + .seconds(30)) == nil)
        #expect(report.record(reason: nil, affected: 1, now: start + .seconds(31))?.affected == 1)
    }

    @Test func reconnectionBacksOffAndResets() {
        var backoff = ReconnectBackoff()
        let delays = (0..<7).map { _ in backoff.failed(jitter: 1).nanoseconds / 1_000_000 }
        #expect(delays == [100, 200, 400, 800, 1600, 2000, 2000])
        #expect(backoff.failed(jitter: 0.5) == .seconds(1))
        backoff.succeeded()
        #expect(backoff.failed(jitter: 1) == .milliseconds(100))
    }

    @Test func redisAddressesAreLiteralsOrTheMastersLookups() throws {
        let v4 = RedisRateLimiter.address(host: "127.0.0.1", port: 6379, resolved: [:])
        #expect(v4 == (try SocketAddress(ipAddress: "127.0.0.1", port: 6379)))
        #expect(RedisRateLimiter.address(host: "::1", port: 6380, resolved: [:])
            == (try SocketAddress(ipAddress: "::1", port: 6380)))
        // A host name is never looked up here: the master's answer, or nothing yet.
        #expect(RedisRateLimiter.address(host: "redis.internal", port: 6379, resolved: [:]) == nil)
        #expect(RedisRateLimiter.address(host: "redis.internal", port: 6379, resolved: ["redis.internal": "10.0.0.9"])
            == (try SocketAddress(ipAddress: "10.0.0.9", port: 6379)))
    }
}
