// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import NIOEmbedded
import Testing

@testable import JesterProxy

/// A worker's pool on the embedded loop: its retry budget is what these tests exercise (no sockets).
private func pool() throws -> UpstreamPool {
    let configuration = try ConfigLoader(environment: [:]).load(text: """
        [[listeners]]
        name = "main"
        address = "127.0.0.1:8080"

        [upstreams.app]
        targets = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]

        [[routes]]
        upstream = "app"
        """, file: "test.toml")
    return try #require(WorkerRuntime(configuration: configuration, eventLoop: EmbeddedEventLoop(), slot: 0).pools["app"])
}

@Test func retriesAreCountedExcludeTheFailedTargetsAndStopAtThePolicysLimit() throws {
    let pool = try pool()
    let policy = RetryPolicy(maxRetries: 2)
    var attempts = RetryAttempts()
    guard case .retry(let delay) = attempts.next(
        after: .reset, policy: policy, idempotent: true, hasBody: false, target: 0, pool: pool)
    else { Issue.record("the first retry was refused"); return }
    #expect(delay >= 0 && delay <= policy.maxBackoffSeconds)
    guard case .retry = attempts.next(
        after: .status(503), policy: policy, idempotent: true, hasBody: false, target: 2, pool: pool)
    else { Issue.record("the second retry was refused"); return }
    #expect(attempts.made == 2 && attempts.failedTargets == [0, 2])
    guard case .notAllowed = attempts.next(
        after: .reset, policy: policy, idempotent: true, hasBody: false, target: 1, pool: pool)
    else { Issue.record("a third retry went out"); return }
    // A request with a body, or a POST without retry_non_idempotent, is never sent twice.
    var other = RetryAttempts()
    guard case .notAllowed = other.next(after: .reset, policy: policy, idempotent: true, hasBody: true, target: 0, pool: pool),
        case .notAllowed = other.next(after: .reset, policy: policy, idempotent: false, hasBody: false, target: 0, pool: pool),
        case .notAllowed = other.next(after: .status(500), policy: policy, idempotent: true, hasBody: false, target: 0, pool: pool)
    else { Issue.record("a retry the policy forbids went out"); return }
    #expect(other.made == 0 && other.failedTargets.isEmpty)
    // The next request starts from nothing.
    attempts.lastFailure = .closedEarly
    attempts.finish()
    #expect(attempts.made == 0 && attempts.failedTargets.isEmpty && attempts.lastFailure == nil)
}

@Test func eachRetriedRequestHoldsOneBudgetSlotUntilItFinishes() throws {
    let pool = try pool()
    let policy = RetryPolicy(maxRetries: 3)
    // With nothing in flight the budget still allows its minimum (3) retried requests at once.
    var requests = (0..<4).map { _ in RetryAttempts() }
    for index in 0..<3 {
        guard case .retry = requests[index].next(
            after: .reset, policy: policy, idempotent: true, hasBody: false, target: 0, pool: pool)
        else { Issue.record("request \(index) could not retry"); return }
    }
    // A second retry of the same request takes no second slot.
    guard case .retry = requests[0].next(after: .reset, policy: policy, idempotent: true, hasBody: false, target: 1, pool: pool)
    else { Issue.record("a request's second retry was refused"); return }
    guard case .budgetExhausted = requests[3].next(
        after: .reset, policy: policy, idempotent: true, hasBody: false, target: 0, pool: pool)
    else { Issue.record("a fourth request retried past the budget"); return }
    #expect(requests[3].made == 0)
    requests[1].finish()
    guard case .retry = requests[3].next(after: .reset, policy: policy, idempotent: true, hasBody: false, target: 0, pool: pool)
    else { Issue.record("a finished request's slot was not returned"); return }
}
