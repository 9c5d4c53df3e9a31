// SPDX-License-Identifier: Apache-2.0
import JesterWasm
import Testing

/// The SDK's examples (SDK/examples), built at test time with the toolchain's clang and with zig, run through
/// the engine: the C header, the runtime and ABI v1 agree, with both compilers.
@Suite struct SDKExampleTests {
    static let compilers = ["clang", "zig"]

    private func policy(_ name: String, _ compiler: String, config: String) throws -> PolicyInstance {
        let module = try PolicyModule.load(path: try WasmFixtures.example(name, compiler: compiler), limits: .forTests)
        return try PolicyInstance(
            module: module,
            policyID: name.replacingOccurrences(of: "_", with: "-"),
            config: config
        )
    }

    @Test(arguments: compilers) func headerInjection(compiler: String) throws {
        let policy = try policy(
            "header_inject",
            compiler,
            config: #"{"request_header": "x-team", "request_value": "blue"}"#
        )
        #expect(policy.module.stages == [.preRoute, .postResponse])
        var metadata = PolicyMetadata()
        var expected = RequestMutations()
        expected.fields = [.set(PolicyField("x-team", "blue"))]
        for _ in 0..<3 {
            #expect(
                policy.run(.preRoute, context: PolicyContext(path: "/a"), metadata: &metadata) == .proceed(expected)
            )
        }
        var response = ResponseMutations()
        response.fields = [.set(PolicyField("x-served-by", "jester-policy"))]
        let context = PolicyContext(status: 200, responseHeaders: [PolicyField("content-type", "text/plain")])
        #expect(policy.run(.postResponse, context: context, metadata: &metadata) == .proceedResponse(response))
    }

    @Test(arguments: compilers) func tenantRouter(compiler: String) throws {
        let policy = try policy("tenant_router", compiler, config: #"{"route_prefix": "t-"}"#)
        var metadata = PolicyMetadata()
        let request = PolicyContext(
            authority: "api.example.com",
            path: "/orders",
            requestHeaders: [PolicyField("accept", "*/*"), PolicyField("x-tenant", "acme")]
        )
        var expected = RequestMutations()
        expected.routeHint = RouteHint(route: "t-acme")
        #expect(policy.run(.preRoute, context: request, metadata: &metadata) == .proceed(expected))
        #expect(metadata.value(policy: "tenant-router", key: "tenant") == "acme")

        for headers in [[], [PolicyField("x-tenant", "ACME; drop")]] {
            var bag = PolicyMetadata()
            let outcome = policy.run(.preRoute, context: PolicyContext(requestHeaders: headers), metadata: &bag)
            #expect(
                outcome
                    == .respond(
                        PolicyResponse(
                            status: 400,
                            fields: [PolicyField("content-type", "text/plain")],
                            body: Array("missing or invalid tenant\n".utf8)
                        )
                    )
            )
            #expect(bag.entries.isEmpty)
        }
        let counters = policy.takeCounters()
        #expect(counters.counters == ["routed": 1, "rejected": 2] && counters.dropped == 0)
    }

    @Test(arguments: compilers) func theArenaDoesNotGrowFromRequestToRequest(compiler: String) throws {
        // Each call's context and result are dropped at the next call: 200 requests with a 4 KiB body through
        // the redactor leave the memory as it was after the first.
        let policy = try policy("json_redactor", compiler, config: #"{"fields": "password"}"#)
        var metadata = PolicyMetadata()
        let body = "{\"password\": \"x\", \"pad\": \"" + String(repeating: "a", count: 4096) + "\"}"
        let context = PolicyContext(
            status: 200,
            responseHeaders: [PolicyField("content-type", "application/json")],
            responseBody: Array(body.utf8)
        )
        _ = policy.run(.postResponse, context: context, metadata: &metadata)
        let after = policy.memoryBytes
        for index in 0..<200 {
            let outcome = policy.run(.postResponse, context: context, metadata: &metadata)
            guard case .proceedResponse = outcome else {
                Issue.record("call \(index) failed: \(outcome)")
                return
            }
        }
        #expect(after > 0 && policy.memoryBytes == after)
    }

    @Test(arguments: compilers) func tenantRouterRefusesABadConfiguration(compiler: String) throws {
        let path = try WasmFixtures.example("tenant_router", compiler: compiler)
        let module = try PolicyModule.load(path: path, limits: .forTests)
        let long = String(repeating: "x", count: 65)
        do {
            _ = try PolicyInstance(module: module, policyID: "t", config: "{\"header\": \"\(long)\"}")
            Issue.record("a 65-character header name was accepted")
        } catch {
            #expect(error.kind == .initFailed && error.message.contains("header must be 1-64 characters"))
        }
    }

    @Test(arguments: compilers) func jsonRedactor(compiler: String) throws {
        let policy = try policy("json_redactor", compiler, config: #"{"fields": "password,ssn"}"#)
        var metadata = PolicyMetadata()
        let body = #"{"user": "ann", "password": "hunter2", "profile": {"ssn": 123456789, "city": "Oslo"}}"#
        let context = PolicyContext(
            status: 200,
            responseHeaders: [PolicyField("content-type", "application/json")],
            responseBody: Array(body.utf8)
        )
        var expected = ResponseMutations()
        expected.body = Array(
            #"{"user": "ann", "password":"[redacted]", "profile": {"ssn":"[redacted]", "city": "Oslo"}}"#.utf8
        )
        #expect(policy.run(.postResponse, context: context, metadata: &metadata) == .proceedResponse(expected))
        #expect(policy.lastLogs == [PolicyLogLine(level: .info, message: "redacted fields in a JSON response")])
        #expect(policy.takeCounters().counters == ["redacted_fields": 2])

        // Not JSON, or nothing to redact: the response goes on unchanged.
        var plain = context
        plain.responseHeaders = [PolicyField("content-type", "text/plain")]
        #expect(policy.run(.postResponse, context: plain, metadata: &metadata) == .proceedResponse(ResponseMutations()))
        var clean = context
        clean.responseBody = Array(#"{"user": "ann"}"#.utf8)
        #expect(policy.run(.postResponse, context: clean, metadata: &metadata) == .proceedResponse(ResponseMutations()))
    }

    @Test(arguments: compilers) func bodyRouterRoutesByAListedMemberOfTheBody(compiler: String) throws {
        let policy = try policy(
            "body_router", compiler, config: #"{"member": "type", "values": "bulk,express", "route_prefix": "orders-"}"#)
        #expect(policy.module.stages == [.preUpstream])
        var metadata = PolicyMetadata()
        func run(_ body: String?) -> PolicyOutcome {
            var context = PolicyContext(path: "/orders")
            context.requestBody = body.map { Array($0.utf8) }
            return policy.run(.preUpstream, context: context, metadata: &metadata)
        }
        var expected = RequestMutations()
        expected.routeHint = RouteHint(route: "orders-bulk")
        #expect(run(#"{"id": 7, "type": "bulk"}"#) == .proceed(expected))
        // A value not listed (a client naming a route), no such member, no body: the request goes on as it came.
        for body in [#"{"type": "admin"}"#, #"{"kind": "bulk"}"#, "not json", nil] {
            #expect(run(body) == .proceed(RequestMutations()), "\(body ?? "no body")")
        }
        let module = try PolicyModule.load(
            path: try WasmFixtures.example("body_router", compiler: compiler), limits: .forTests)
        #expect(throws: PolicyLoadError.self) { _ = try PolicyInstance(module: module, policyID: "b", config: "{}") }
    }

    @Test(arguments: compilers) func jsonRedactorNeedsItsFields(compiler: String) throws {
        let module = try PolicyModule.load(
            path: try WasmFixtures.example("json_redactor", compiler: compiler),
            limits: .forTests
        )
        #expect(throws: PolicyLoadError.self) { _ = try PolicyInstance(module: module, policyID: "r", config: "{}") }
    }

    @Test(arguments: compilers) func failureCircuitAnswers503ItselfAndRecovers(compiler: String) throws {
        let policy = try policy(
            "failure_circuit",
            compiler,
            config: #"{"window": 4, "min_requests": 4, "threshold_percent": 50, "open_requests": 3}"#
        )
        var metadata = PolicyMetadata()
        let request = PolicyContext(path: "/")
        func response(_ status: Int) -> PolicyOutcome {
            policy.run(.postResponse, context: PolicyContext(status: status), metadata: &metadata)
        }
        func preRoute() -> PolicyOutcome { policy.run(.preRoute, context: request, metadata: &metadata) }
        let open = PolicyOutcome.respond(
            PolicyResponse(
                status: 503,
                fields: [PolicyField("retry-after", "1"), PolicyField("content-type", "text/plain")],
                body: Array("service unavailable (circuit open)\n".utf8)
            )
        )

        // 1 failure in 4: stays closed.
        for status in [200, 502, 200, 200] {
            #expect(preRoute() == .proceed(RequestMutations()))
            _ = response(status)
        }
        // 2 of the last 4 fail: it opens, and answers the next 3 requests itself.
        _ = response(503)
        #expect(preRoute() == open && preRoute() == open && preRoute() == open)
        // Half open: one request goes through; its success closes the circuit.
        #expect(preRoute() == .proceed(RequestMutations()))
        _ = response(200)
        #expect(preRoute() == .proceed(RequestMutations()))
        #expect(policy.takeCounters().counters == ["opened": 1, "short_circuited": 3])
    }
}
