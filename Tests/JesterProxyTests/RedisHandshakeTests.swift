// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import JesterProxy

/// What a connection told its owner.
private final class RecordingOwner: RedisConnectionOwner {
    var closed: [RedisConnectionFailure] = []

    func redisConnectionClosed(_ connection: RedisConnection, failure: RedisConnectionFailure) {
        closed.append(failure)
    }
}

/// A connection's handshake (AUTH, SELECT) on an embedded channel: what is sent, in which order, and what a
/// refusal does.
@Suite struct RedisHandshakeTests {
    /// A connection on an active embedded channel, and its owner.
    private func makeConnection() throws -> (RedisConnection, EmbeddedChannel, RecordingOwner) {
        let owner = RecordingOwner()
        let connection = RedisConnection(owner: owner)
        let channel = EmbeddedChannel(handler: connection)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        return (connection, channel, owner)
    }

    /// Everything written so far, as text (the loop runs first: writes of one tick share a flush).
    private func written(_ channel: EmbeddedChannel) throws -> String {
        channel.embeddedEventLoop.run()
        var text = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += buffer.readString(length: buffer.readableBytes) ?? ""
        }
        return text
    }

    @Test func authWithAUserThenSelectArePipelinedAndOpenOnOK() throws {
        let (connection, channel, owner) = try makeConnection()
        var opened: Result<Void, RedisConnectionFailure>?
        connection.open(RedisHandshake(username: "limiter", password: "p w", database: 3), now: .now()) {
            opened = $0
        }
        // Both commands in one flush, AUTH first (SELECT needs an authenticated connection); RESP bulk strings
        // carry any password byte for byte.
        #expect(try written(channel)
            == "*3\r\n$4\r\nAUTH\r\n$7\r\nlimiter\r\n$3\r\np w\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n")
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(opened == nil, "open before SELECT was answered")
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        guard case .success = opened else {
            Issue.record("not opened: \(String(describing: opened))")
            return
        }
        #expect(connection.isUsable && owner.closed.isEmpty)
        #expect(connection.outstanding == 0)
    }

    @Test func withoutAUserAuthSendsThePasswordAloneAndDatabaseZeroSendsNoSelect() throws {
        let (connection, channel, _) = try makeConnection()
        var opened: Result<Void, RedisConnectionFailure>?
        connection.open(RedisHandshake(password: "door-key"), now: .now()) { opened = $0 }
        #expect(try written(channel) == "*2\r\n$4\r\nAUTH\r\n$8\r\ndoor-key\r\n")
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        guard case .success = opened else {
            Issue.record("not opened: \(String(describing: opened))")
            return
        }
    }

    @Test func noHandshakeOpensAtOnceAndSendsNothing() throws {
        let (connection, channel, _) = try makeConnection()
        var opened: Result<Void, RedisConnectionFailure>?
        connection.open(RedisHandshake(), now: .now()) { opened = $0 }
        guard case .success = opened else {
            Issue.record("not opened at once: \(String(describing: opened))")
            return
        }
        #expect(try written(channel).isEmpty)
    }

    @Test func aRefusedAuthClosesTheConnectionWithRedisReasonAndNotThePassword() throws {
        let (connection, channel, owner) = try makeConnection()
        var opened: [Result<Void, RedisConnectionFailure>] = []
        connection.open(RedisHandshake(username: "limiter", password: "hunter2", database: 1), now: .now()) {
            opened.append($0)
        }
        _ = try written(channel)
        // Redis answers the pipelined SELECT too (NOAUTH): the connection is closed before that matters.
        let refusal = "WRONGPASS invalid username-password pair or user is disabled."
        try channel.writeInbound(ByteBuffer(string: "-\(refusal)\r\n"))
        let reason = "AUTH as limiter refused: " + refusal
        #expect(opened.count == 1)
        guard case .failure(.refused(let why)) = opened.first else {
            Issue.record("not refused: \(opened)")
            return
        }
        #expect(why == reason && !why.contains("hunter2"))
        #expect(owner.closed == [.refused(reason)])
        #expect(!connection.isUsable)
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test func aRefusedSelectIsARefusalToo() throws {
        let (connection, channel, owner) = try makeConnection()
        var opened: Result<Void, RedisConnectionFailure>?
        connection.open(RedisHandshake(password: "door-key", database: 99), now: .now()) { opened = $0 }
        _ = try written(channel)
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n-ERR DB index is out of range\r\n"))
        guard case .failure(.refused("SELECT 99 refused: ERR DB index is out of range")) = opened else {
            Issue.record("not refused: \(String(describing: opened))")
            return
        }
        #expect(owner.closed.count == 1)
    }

    @Test func aCloseDuringTheHandshakeFailsIt() throws {
        let (connection, channel, _) = try makeConnection()
        var opened: [Result<Void, RedisConnectionFailure>] = []
        connection.open(RedisHandshake(password: "door-key", database: 2), now: .now()) { opened.append($0) }
        _ = try written(channel)
        try channel.close().wait()
        #expect(opened.count == 1)
        guard case .failure(.closed) = opened.first else {
            Issue.record("not failed: \(opened)")
            return
        }
    }
}

/// The limiter against a real Redis that wants a password: `requirepass`, an ACL user, a database, and wrong
/// credentials answered with the failure policy at once rather than after a timeout.
@Suite(.serialized, .enabled(if: RedisServer.isInstalled, "redis-server and redis-cli are not installed"))
final class RedisAuthenticationTests {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let redis: RedisServer
    var limiters: [RedisRateLimiter] = []

    init() throws {
        redis = try RedisServer(arguments: ["--requirepass", "door-key"], password: "door-key")
        // An ACL user that may touch Jester's keys only.
        #expect(try redis.command("ACL", "SETUSER", "limiter", "on", ">limiter-key", "~jester:*", "+@all") == "OK")
    }

    deinit {
        for limiter in limiters { limiter.shutdown() }
        try? group.syncShutdownGracefully()
        redis.kill()
    }

    private func makeLimiter(_ handshake: RedisHandshake, timeout: Duration = .milliseconds(500)) -> RedisRateLimiter {
        let limiter = RedisRateLimiter(
            eventLoop: group.next(), host: "127.0.0.1", port: redis.port, handshake: handshake, poolSize: 2,
            timeout: timeout, keyPrefix: "jester:auth:", logger: Logger(label: "test"))
        limiters.append(limiter)
        return limiter
    }

    private func check(_ limiter: RedisRateLimiter, _ key: String) async -> ClusterRateDecision {
        // 10 an hour: no allowance comes back between two checks, however loaded the machine.
        await RedisRateLimiterTests.check(limiter, key, rate: 10, period: .seconds(3600), burst: 2)
    }

    @Test func theRightPasswordCounts() async throws {
        let limiter = makeLimiter(RedisHandshake(password: "door-key"))
        #expect(await check(limiter, "a") == .allow(remaining: 2, resetAfter: .seconds(360)))
        guard case .allow(remaining: 1, _) = await check(limiter, "a") else {
            Issue.record("the second request was not counted")
            return
        }
        #expect(try redis.command("EXISTS", "jester:auth:a") == "1")
    }

    @Test func anACLUserCountsInItsDatabase() async throws {
        let limiter = makeLimiter(RedisHandshake(username: "limiter", password: "limiter-key", database: 2))
        #expect(await check(limiter, "b") == .allow(remaining: 2, resetAfter: .seconds(360)))
        #expect(try redis.command("-n", "2", "EXISTS", "jester:auth:b") == "1")
        #expect(try redis.command("EXISTS", "jester:auth:b") == "0", "counted in database 0")
    }

    @Test(arguments: [
        RedisHandshake(password: "wrong"), RedisHandshake(username: "limiter", password: "door-key"),
        RedisHandshake(username: "nobody", password: "limiter-key"), RedisHandshake(password: "door-key", database: 99),
    ])
    func refusedCredentialsAreUnavailableAtOnce(_ handshake: RedisHandshake) async throws {
        let limiter = makeLimiter(handshake)
        let clock = ContinuousClock()
        let started = clock.now
        for _ in 0..<10 { #expect(await check(limiter, "c") == .unavailable) }
        // Refused means known down: not ten timeouts, nor one.
        #expect(clock.now - started < .milliseconds(400))
        #expect(try redis.command("EXISTS", "jester:auth:c") == "0")
    }

    @Test func noPasswordForARedisThatWantsOneIsUnavailable() async throws {
        let limiter = makeLimiter(RedisHandshake())
        let clock = ContinuousClock()
        let started = clock.now
        // NOAUTH answers the script: one round trip, not the timeout.
        #expect(await check(limiter, "d") == .unavailable)
        #expect(clock.now - started < .milliseconds(400))
    }
}
