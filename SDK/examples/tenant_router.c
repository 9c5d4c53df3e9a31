// SPDX-License-Identifier: Apache-2.0
//
// Tenant router: reads the tenant from a request field, routes to the route "<prefix><tenant>" (a routing
// hint the router resolves), and leaves the tenant in the request's metadata for later policies. A request
// without a tenant, or with one that is not [a-z0-9-]{1,32}, is answered 400 by the policy itself.
// Configuration: {"header": "x-tenant", "route_prefix": "tenant-"}
#include "jester_policy.h"

static jp_str header, prefix;

static int setup(jp_str config) {
    if (!jp_json_string(config, "header", &header)) header = jp_cstr("x-tenant");
    if (!jp_json_string(config, "route_prefix", &prefix)) prefix = jp_cstr("tenant-");
    if (header.len == 0 || header.len > 64) {
        jp_init_error("header must be 1-64 characters");
        return 1;
    }
    return 0;
}

static int valid_tenant(jp_str tenant) {
    if (tenant.len == 0 || tenant.len > 32) return 0;
    for (uint32_t i = 0; i < tenant.len; i++) {
        char c = tenant.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return 0;
    }
    return 1;
}

static void pre_route(const jp_context *ctx) {
    // header names in the context are lowercase; the configured one is matched as written
    const jp_header *found = 0;
    for (uint32_t i = 0; i < ctx->request_headers.len; i++) {
        jp_str name = ctx->request_headers.ptr[i].name;
        if (name.len == header.len && __builtin_memcmp(name.ptr, header.ptr, name.len) == 0) {
            found = &ctx->request_headers.ptr[i];
            break;
        }
    }
    if (!found || !valid_tenant(found->value)) {
        jp_counter_add("rejected", 1);
        jp_respond(400, "missing or invalid tenant\n");
        jp_respond_header("content-type", "text/plain");
        return;
    }
    char *route = jp_alloc(prefix.len + found->value.len);
    __builtin_memcpy(route, prefix.ptr, prefix.len);
    __builtin_memcpy(route + prefix.len, found->value.ptr, found->value.len);
    jp_set_route((jp_str){route, prefix.len + found->value.len});
    jp_metadata_set("tenant", found->value);
    jp_counter_add("routed", 1);
}

JESTER_POLICY_INIT(setup)
JESTER_POLICY_PRE_ROUTE(pre_route)
