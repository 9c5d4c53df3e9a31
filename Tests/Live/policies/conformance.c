// SPDX-License-Identifier: Apache-2.0
//
// The live tests' conformance policy: at every stage it does what the request's `x-do-<stage>` field says
// (pre_route: x-do-route, pre_upstream: x-do-upstream, post_response: x-do-response), so one module exercises
// every mutation, short-circuit and failure of ABI v1 against real clients and upstreams.
#include "jester_policy.h"

static int has_prefix(jp_str text, const char *prefix, jp_str *rest) {
    if (!jp_str_starts_with(text, prefix)) return 0;
    uint32_t n = 0;
    while (prefix[n]) n++;
    rest->ptr = text.ptr + n;
    rest->len = text.len - n;
    return 1;
}

static volatile uint32_t sink;

// Deep recursion: stops only when `limit` (a field the client never sends that large) is reached.
static uint32_t recurse(uint32_t depth, uint32_t limit) {
    volatile uint8_t frame[256];
    frame[depth & 255] = (uint8_t)depth;
    if (depth == limit) return frame[0];
    return recurse(depth + 1, limit) + frame[0];
}

static void act(const jp_context *ctx, const char *field) {
    const jp_header *what = jp_find_header(ctx->request_headers, field);
    if (!what) return;
    jp_str command = what->value, arg;
    if (jp_str_eq(command, "deny")) { jp_deny("told to"); return; }
    if (jp_str_eq(command, "respond")) {
        jp_respond(299, "answered by the policy\n");
        jp_respond_header("x-answered-by", "policy");
        return;
    }
    if (jp_str_eq(command, "count")) { jp_counter_add("seen_twice", 2); jp_log(JP_INFO, "counted"); return; }
    if (jp_str_eq(command, "respond-304")) { jp_respond(304, "a body a 304 must not carry\n"); return; }
    if (jp_str_eq(command, "trap")) __builtin_trap();
    if (jp_str_eq(command, "loop")) { for (;;) sink++; }
    if (jp_str_eq(command, "grow")) { for (;;) if (__builtin_wasm_memory_grow(0, 16) == (unsigned long)-1) __builtin_trap(); }
    if (jp_str_eq(command, "recurse")) { sink = recurse(0, 0xFFFFFFFFu); return; }
    if (jp_str_eq(command, "crlf")) { jp_set_header("x-evil", "a\r\nx-injected: 1"); return; }
    if (jp_str_eq(command, "length")) { jp_set_header("content-length", "1"); return; }
    if (jp_str_eq(command, "badutf8")) { jp_set_header("x-bad", "\xff\xfe"); return; }
    if (jp_str_eq(command, "tag")) { jp_add_route_tag(jp_cstr("beta")); return; }
    if (jp_str_eq(command, "metadata")) {
        jp_metadata_set("seen", ctx->path);
        return;
    }
    if (jp_str_eq(command, "read-metadata")) {
        jp_str seen;
        if (jp_metadata_get("seen", &seen)) jp_set_header_str(jp_cstr("x-metadata"), seen);
        return;
    }
    if (jp_str_eq(command, "redact")) {
        // Replaces every digit of the body with '#'.
        if (!ctx->response_body.is_some) { jp_set_header("x-no-body", "1"); return; }
        jp_bytes body = ctx->response_body.value;
        uint8_t *copy = jp_alloc(body.len);
        for (uint32_t i = 0; i < body.len; i++) copy[i] = body.ptr[i] >= '0' && body.ptr[i] <= '9' ? '#' : body.ptr[i];
        jp_set_body((jp_bytes){copy, body.len});
        jp_set_header("x-redacted", "1");
        return;
    }
    if (jp_str_eq(command, "replace-body")) { jp_set_body((jp_bytes){(const uint8_t *)"replaced\n", 9}); return; }
    if (jp_str_eq(command, "body-length")) {
        static char digits[16];
        uint32_t n = ctx->request_body.is_some ? ctx->request_body.value.len : 0, i = 15;
        digits[i] = 0;
        do { digits[--i] = (char)('0' + n % 10); n /= 10; } while (n && i);
        jp_set_header("x-body-length", digits + i);
        return;
    }
    if (has_prefix(command, "set-header ", &arg)) { jp_set_header_str(jp_cstr("x-set"), arg); return; }
    if (has_prefix(command, "add-header ", &arg)) { jp_add_header("x-added", "one"); jp_add_header("x-added", "two"); return; }
    if (has_prefix(command, "remove-header ", &arg)) {
        static char name[64];
        uint32_t n = arg.len < 63 ? arg.len : 63;
        for (uint32_t i = 0; i < n; i++) name[i] = arg.ptr[i];
        name[n] = 0;
        jp_remove_header(name);
        return;
    }
    if (has_prefix(command, "path ", &arg)) { jp_set_path(arg); return; }
    if (has_prefix(command, "query ", &arg)) { jp_set_query(arg); return; }
    if (has_prefix(command, "method ", &arg)) {
        static char method[16];
        uint32_t n = arg.len < 15 ? arg.len : 15;
        for (uint32_t i = 0; i < n; i++) method[i] = arg.ptr[i];
        method[n] = 0;
        jp_set_method(method);
        return;
    }
    if (has_prefix(command, "route ", &arg)) { jp_set_route(arg); return; }
    if (jp_str_eq(command, "route-from-body")) {
        // Body-based routing: the body names the route (a pre_upstream policy that reads the body).
        if (ctx->request_body.is_some)
            jp_set_route((jp_str){(const char *)ctx->request_body.value.ptr, ctx->request_body.value.len});
        return;
    }
    if (has_prefix(command, "upstream ", &arg)) { jp_set_upstream(arg); return; }
    if (has_prefix(command, "timeout ", &arg)) {
        uint32_t ms = 0;
        for (uint32_t i = 0; i < arg.len; i++) ms = ms * 10 + (uint32_t)(arg.ptr[i] - '0');
        jp_set_upstream_timeout_ms(ms);
        return;
    }
}

static int setup(jp_str config) { (void)config; return 0; }
static void pre_route(const jp_context *ctx) { act(ctx, "x-do-route"); }
static void pre_upstream(const jp_context *ctx) { act(ctx, "x-do-upstream"); }
static void post_response(const jp_context *ctx) { act(ctx, "x-do-response"); }

JESTER_POLICY_INIT(setup)
JESTER_POLICY_PRE_ROUTE(pre_route)
JESTER_POLICY_PRE_UPSTREAM(pre_upstream)
JESTER_POLICY_POST_RESPONSE(post_response)
