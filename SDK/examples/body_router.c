// SPDX-License-Identifier: Apache-2.0
//
// Body router: routes a request by a member of its JSON body (an order's "type", say) to the route
// "<prefix><value>": routing on what only the body says, which a pre_route policy cannot see. Attach it at
// pre_upstream, with read_body = true, to a route with policy_reroute = true (jester.toml(5)); the request then
// goes through the chosen route's filters and policies as if the router had picked it. Only the listed values
// route, so a client cannot reach a route by naming it; any other body goes on along the route it came by, and
// the policy counts what it did. A member given twice is read at its first occurrence (jp_json_string), where many
// JSON parsers keep the last: an upstream that must agree should refuse duplicate members.
// Configuration: {"member": "type", "values": "bulk,express", "route_prefix": "orders-"}
#include "jester_policy.h"

static jp_str values, prefix;
// The member's name, NUL-terminated for jp_json_string.
static char member[65];

static int setup(jp_str config) {
    jp_str name;
    if (!jp_json_string(config, "member", &name)) name = jp_cstr("type");
    if (name.len == 0 || name.len >= sizeof member) {
        jp_init_error("member must be 1-64 characters");
        return 1;
    }
    __builtin_memcpy(member, name.ptr, name.len);
    member[name.len] = 0;
    if (!jp_json_string(config, "route_prefix", &prefix)) prefix = jp_cstr("");
    if (!jp_json_string(config, "values", &values) || values.len == 0) {
        jp_init_error("values must list the member's values that route (\"bulk,express\")");
        return 1;
    }
    return 0;
}

// Whether `value` is one of the comma-separated `values` (an empty value never is).
static int listed(jp_str value) {
    if (value.len == 0) return 0;
    uint32_t start = 0;
    for (uint32_t i = 0; i <= values.len; i++) {
        if (i < values.len && values.ptr[i] != ',') continue;
        if (i - start == value.len && __builtin_memcmp(values.ptr + start, value.ptr, value.len) == 0) return 1;
        start = i + 1;
    }
    return 0;
}

static void pre_upstream(const jp_context *ctx) {
    jp_str value;
    if (!ctx->request_body.is_some
        || !jp_json_string((jp_str){(const char *)ctx->request_body.value.ptr, ctx->request_body.value.len}, member,
                           &value)
        || !listed(value)) {
        jp_counter_add("unrouted", 1);
        return;
    }
    char *route = jp_alloc(prefix.len + value.len);
    __builtin_memcpy(route, prefix.ptr, prefix.len);
    __builtin_memcpy(route + prefix.len, value.ptr, value.len);
    jp_set_route((jp_str){route, prefix.len + value.len});
    jp_counter_add("routed", 1);
}

JESTER_POLICY_INIT(setup)
JESTER_POLICY_PRE_UPSTREAM(pre_upstream)
