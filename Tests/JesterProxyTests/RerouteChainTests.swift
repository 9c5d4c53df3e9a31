// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterWasm
import NIOCore
import Testing

@testable import JesterProxy

/// A route that a re-resolve pass (`policy_reroute`) moves a request to runs only its own filters and pre-upstream
/// policies: its listener's ran on the first route, and running them again would count a rate limit twice or let a
/// listener's re-routing policy ask again (and fail closed). The live tier (test_policies.py) drives the pass itself.
@Suite struct RerouteChainTests {
    @Test func aRoutesOwnChainsLeaveOutItsListeners() throws {
        // A stand-in module: it does not instantiate, which only marks the worker's policy failed.
        let directory = NSTemporaryDirectory() + "jester-reroute-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        FileManager.default.createFile(atPath: directory + "/p.wasm", contents: Data([0, 0x61, 0x73, 0x6D, 1, 0, 0, 0]))
        let harness = try ExchangeHarness(
            """
            [filters.outer]
            kind = "rate_limit"
            rate = 100

            [filters.inner]
            kind = "rate_limit"
            rate = 50

            [policies.listener_wide]
            module = "\(directory)/p.wasm"

            [policies.own]
            module = "\(directory)/p.wasm"

            [[routes]]
            name = "first"
            path_prefix = "/a"
            policy_reroute = true
            respond = { status = 200 }

            [[routes]]
            name = "second"
            path_prefix = "/b"
            filters = ["inner"]
            policies = [{ policy = "own", stage = "pre_upstream" }]
            respond = { status = 200 }
            """,
            listener: """
                filters = ["outer"]
                policies = [{ policy = "listener_wide", stage = "pre_upstream" }]
                """)
        let routes = try #require(harness.runtime.routeTables["main"])
        let second = try #require(routes.route(named: "second"))
        #expect(second.filters.filters.map(\.name) == ["outer", "inner"])
        #expect(second.ownFilters.filters.map(\.name) == ["inner"])
        #expect(second.ownFilters.kinds.count == 1)
        #expect(second.preUpstreamPolicies.map(\.name) == ["listener_wide", "own"])
        #expect(second.ownPreUpstreamPolicies.map(\.name) == ["own"])
        let first = try #require(routes.route(named: "first"))
        #expect(first.reroutes && first.ownFilters.isEmpty && first.ownPreUpstreamPolicies.isEmpty)
        #expect(first.preUpstreamPolicies.map(\.name) == ["listener_wide"])
    }
}
