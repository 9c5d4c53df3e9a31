// SPDX-License-Identifier: Apache-2.0
import JesterWasm
import Testing

/// Every builder of the C SDK (SDK/c/jester_policy.h) through the engine: a C policy that uses each one at the
/// stage that allows it, and the Swift values the host decodes from what it built.
@Suite struct SDKBuilderTests {
    static let source = """
        #include "jester_policy.h"

        static int setup(jp_str config) {
            (void)config;
            return 0;
        }

        static void pre_upstream(const jp_context *ctx) {
            if (jp_str_eq(ctx->path, "/deny")) {
                jp_deny("denied by path");
                return;
            }
            if (jp_str_eq(ctx->path, "/respond")) {
                static const uint8_t body[] = {0, 1, 2, 255};
                jp_respond_bytes(202, (jp_bytes){body, sizeof body});
                jp_respond_header("x-a", "1");
                jp_respond_header("x-b", "2");
                return;
            }
            jp_set_header("x-set", "s");
            jp_add_header("x-add", "a");
            jp_remove_header("x-gone");
            jp_set_method("PUT");
            jp_set_path(jp_cstr("/v2/items"));
            jp_set_query(jp_cstr("page=3"));
            jp_set_route(jp_cstr("items"));
            jp_add_route_tag(jp_cstr("blue"));
            jp_set_upstream(jp_cstr("pool-b"));
            jp_set_upstream_timeout_ms(1500);
            jp_set_upstream_retries(2);
            // The body, upper-cased (the request's, when there is one).
            if (ctx->request_body.is_some) {
                uint32_t n = ctx->request_body.value.len;
                uint8_t *out = jp_alloc(n);
                for (uint32_t i = 0; i < n; i++) {
                    uint8_t c = ctx->request_body.value.ptr[i];
                    out[i] = c >= 'a' && c <= 'z' ? c - 32 : c;
                }
                jp_set_body((jp_bytes){out, n});
            }
            // The route and the client, echoed as fields; a string that only lives in this call's arena.
            if (ctx->route.is_some) jp_set_header_str(jp_cstr("x-route"), jp_str_copy(ctx->route.value));
            jp_set_header_str(jp_cstr("x-client"), ctx->client_address);
            const jp_header *agent = jp_find_header(ctx->request_headers, "user-agent");
            if (agent) jp_set_header_str(jp_cstr("x-agent"), agent->value);
            if (JP_HAS_FIELD(ctx, response_body)) jp_add_header("x-v1", "yes");
        }

        JESTER_POLICY_INIT(setup)
        JESTER_POLICY_PRE_UPSTREAM(pre_upstream)
        """

    private func policy() throws -> PolicyInstance {
        let module = try PolicyModule.load(
            bytes: try WasmFixtures.policy(c: Self.source),
            name: "builders.wasm",
            limits: .forTests
        )
        return try PolicyInstance(module: module, policyID: "builders", config: "")
    }

    @Test func everyMutationBuilder() throws {
        let policy = try policy()
        var bag = PolicyMetadata()
        let context = PolicyContext(
            method: "POST",
            path: "/items",
            clientAddress: "198.51.100.7",
            requestHeaders: [PolicyField("user-agent", "curl/8"), PolicyField("x-gone", "1")],
            requestBody: Array("hello, world".utf8),
            route: "items-v1"
        )
        var expected = RequestMutations()
        expected.fields = [
            .set(PolicyField("x-set", "s")), .add(PolicyField("x-add", "a")), .remove("x-gone"),
            .set(PolicyField("x-route", "items-v1")), .set(PolicyField("x-client", "198.51.100.7")),
            .set(PolicyField("x-agent", "curl/8")), .add(PolicyField("x-v1", "yes")),
        ]
        expected.method = "PUT"
        expected.path = "/v2/items"
        expected.query = "page=3"
        expected.routeHint = RouteHint(route: "items", tags: ["blue"], upstream: "pool-b")
        expected.upstreamTimeoutMilliseconds = 1500
        expected.upstreamRetries = 2
        expected.body = Array("HELLO, WORLD".utf8)
        for _ in 0..<3 {
            #expect(policy.run(.preUpstream, context: context, metadata: &bag) == .proceed(expected))
        }
    }

    @Test func respondAndDenyBuilders() throws {
        let policy = try policy()
        var bag = PolicyMetadata()
        let respond = policy.run(.preUpstream, context: PolicyContext(path: "/respond"), metadata: &bag)
        #expect(
            respond
                == .respond(
                    PolicyResponse(
                        status: 202,
                        fields: [PolicyField("x-a", "1"), PolicyField("x-b", "2")],
                        body: [0, 1, 2, 255]
                    )
                )
        )
        #expect(
            policy.run(.preUpstream, context: PolicyContext(path: "/deny"), metadata: &bag)
                == .deny(reason: "denied by path")
        )
    }
}
