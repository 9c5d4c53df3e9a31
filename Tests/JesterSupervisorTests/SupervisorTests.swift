// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
@testable import JesterSupervisor
import Testing

@Test func respawnBacksOffExponentiallyThenGivesUp() {
    var policy = RespawnPolicy(maxCrashes: 5, windowSeconds: 60, initialDelaySeconds: 0.1, maxDelaySeconds: 1)
    var decisions: [RespawnPolicy.Decision] = []
    for second in 0..<5 { decisions.append(policy.workerCrashed(startedAt: Double(second), now: Double(second) + 0.5)) }
    #expect(decisions == [.respawn(afterSeconds: 0.1), .respawn(afterSeconds: 0.2), .respawn(afterSeconds: 0.4),
        .respawn(afterSeconds: 0.8), .giveUp(crashes: 5)])
}

@Test func aHealthyRunResetsTheBackoffAndOldCrashesExpire() {
    var policy = RespawnPolicy(maxCrashes: 3, windowSeconds: 10, initialDelaySeconds: 0.1, healthyAfterSeconds: 30)
    _ = policy.workerCrashed(startedAt: 0, now: 1)
    _ = policy.workerCrashed(startedAt: 1, now: 2)
    #expect(policy.workerCrashed(startedAt: 2, now: 100) == .respawn(afterSeconds: 0.1))
    #expect(policy.totalCrashes == 3)
}

@Test func controlAccessAdmitsRootOwnerAndGroupOnly() {
    let access = ControlAccess(masterUserID: 1000, controlGroupID: 50)
    #expect(access.permits(uid: 0, gid: 0, supplementaryGroups: []))
    #expect(access.permits(uid: 1000, gid: 1000, supplementaryGroups: []))
    #expect(access.permits(uid: 2000, gid: 2000, supplementaryGroups: [50]))
    #expect(!access.permits(uid: 2000, gid: 2000, supplementaryGroups: [51]))
    #expect(!ControlAccess(masterUserID: 1000, controlGroupID: nil).permits(uid: 2000, gid: 50, supplementaryGroups: []))
}

/// Both tests use the one environment variable: one at a time.
@Suite(.serialized) struct UpgradeHandOverTests {

    @Test func upgradeHandOverTravelsThroughTheEnvironmentAndIsRemovedThere() throws {
        let handOver = UpgradeHandOver(
            fromVersion: "0.1.0", masterStartedAt: 1_700_000_000, generation: 4, configuration: Data("{}".utf8),
            controlSocketFD: 7,
            listeners: ["main": .init(settings: ListenerSettings(
                name: "main", address: try #require(SocketAddressSpec(parsing: "127.0.0.1:8080")), backlog: 511), fds: [5, 6])],
            activatedSockets: [], storedDescriptorNames: [5: "jester-store-1"],
            workers: [.init(pid: 42, slot: 0, generation: 4, state: "ready", startedAt: 1_700_000_001, configHash: "ab",
                drainDeadline: nil, controlFD: 9, pendingBytes: [0, 0, 1])])
        #expect(handOver.descriptors == [5, 6, 7, 9])
        setenv(UpgradeHandOver.environmentVariable, try handOver.encoded(), 1)
        #expect(try UpgradeHandOver.takeFromEnvironment() == handOver)
        #expect(getenv(UpgradeHandOver.environmentVariable) == nil)
        #expect(try UpgradeHandOver.takeFromEnvironment() == nil)
    }

    @Test func theSharedTablesTravelAcrossAnUpgradeAndAnOldHandOverReadsWithoutThem() throws {
        var handOver = UpgradeHandOver(
            fromVersion: "0.1.0", masterStartedAt: 1_700_000_000, generation: 2, configuration: Data("{}".utf8),
            controlSocketFD: 7, listeners: [:], activatedSockets: [], storedDescriptorNames: [:], workers: [])
        handOver.connectionTableFD = 11
        handOver.rateLimitTableFD = 12
        // Both stay open across the exec, and the new program finds them by number.
        #expect(handOver.descriptors == [7, 11, 12])
        setenv(UpgradeHandOver.environmentVariable, try handOver.encoded(), 1)
        #expect(try UpgradeHandOver.takeFromEnvironment()?.rateLimitTableFD == 12)
        handOver.rateLimitTableFD = nil
        var json = try JSONSerialization.jsonObject(with: Data(try handOver.encoded().utf8)) as? [String: Any] ?? [:]
        json.removeValue(forKey: "rateLimitTableFD")
        let old = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        setenv(UpgradeHandOver.environmentVariable, old, 1)
        #expect(try UpgradeHandOver.takeFromEnvironment() == handOver)
    }

    @Test func anUpgradeHandOverOfAnotherFormatIsRefusedWithItsNumber() {
        setenv(UpgradeHandOver.environmentVariable, #"{"format": 99, "somethingNew": true}"#, 1)
        #expect(throws: UpgradeHandOver.UnreadableHandOver(format: 99)) { try UpgradeHandOver.takeFromEnvironment() }
    }
}

@Test func targetHealthDecidesFirstThenNeedsRiseOrFallInARow() {
    var health = TargetHealth(rise: 2, fall: 3)
    #expect(health.state == .unknown)
    let results = [false, true, false, true, true, false, false, false].map { health.record(success: $0) }
    // The first result decides; then two successes in a row to rise, three failures in a row to fall.
    #expect(results == [true, false, false, false, true, false, false, true])
    #expect(health.state == .unhealthy)
}

// MARK: TLS session-ticket keys

@Test func ticketKeysRotateNewestFirstKeepingThree() {
    var ring = TicketKeyRing()
    #expect(ring.isDue(now: 0, period: 3600))  // no key yet
    let keys = (1...4).map { Data(repeating: UInt8($0), count: 80) }
    ring.rotate(to: keys[0], now: 10)
    #expect(!ring.isDue(now: 3000, period: 3600))
    #expect(ring.isDue(now: 3610, period: 3600))
    ring.rotate(to: keys[1], now: 3610)
    ring.rotate(to: keys[2], now: 7210)
    ring.rotate(to: keys[3], now: 10810)
    #expect(ring.keys == [keys[3], keys[2], keys[1]])
    #expect(TicketKeyRing.freshKey().count == 80)
    #expect(TicketKeyRing.freshKey() != TicketKeyRing.freshKey())
}

// MARK: Target name resolution

@Test func resolvedAddressesTrackNamesIntervalsAndChanges() throws {
    var configuration = Configuration()
    var pool = UpstreamSettings(name: "app", targets: [
        UpstreamTarget(address: SocketAddressSpec(host: "api.internal", port: 80)),
        UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.1", port: 80)),
        UpstreamTarget(address: SocketAddressSpec(host: "::1", port: 80)),
    ])
    pool.resolveInterval = .seconds(5)
    configuration.upstreams = [pool]
    var resolved = ResolvedAddresses()
    resolved.track([configuration])
    #expect(resolved.intervals == ["api.internal": 5])  // address literals need no lookup
    #expect(resolved.due(now: 100) == ["api.internal"])
    #expect(resolved.due(now: 102) == [])
    let changed1 = resolved.record("api.internal", address: "10.0.0.7")
    #expect(changed1)
    let changed2 = resolved.record("api.internal", address: "10.0.0.7")
    #expect(!changed2)  // unchanged
    let changed3 = resolved.record("api.internal", address: nil)
    #expect(!changed3)  // a failed lookup keeps the last address
    #expect(resolved.addresses == ["api.internal": "10.0.0.7"])
    #expect(resolved.due(now: 105) == ["api.internal"])
    let changed4 = resolved.record("api.internal", address: "10.0.0.8")
    #expect(changed4)
    let changed5 = resolved.record("other.internal", address: "10.0.0.9")
    #expect(!changed5)  // not tracked
    resolved.track([Configuration()])
    #expect(resolved.addresses.isEmpty && resolved.intervals.isEmpty)
}

@Test func aClusterRateLimitsRedisHostNameIsLookedUpToo() {
    var configuration = Configuration()
    func limit(_ host: String) -> FilterSettings {
        FilterSettings(name: host, kind: .rateLimit(RateLimitSettings(
            rate: 10, scope: .cluster, redis: RedisSettings(address: SocketAddressSpec(host: host, port: 6379)))))
    }
    configuration.filters = [limit("redis.internal"), limit("10.0.0.5"), limit("::1")]
    var resolved = ResolvedAddresses()
    resolved.track([configuration])
    #expect(resolved.intervals == ["redis.internal": 30])
    #expect(resolved.due(now: 0) == ["redis.internal"])
    let changed = resolved.record("redis.internal", address: "10.0.0.6")
    #expect(changed && resolved.addresses == ["redis.internal": "10.0.0.6"])
}
