// SPDX-License-Identifier: Apache-2.0
//
// Header injection: sets a field on every request before routing, and one on every response.
// Configuration: {"request_header": "x-policy", "request_value": "on", "response_header": "x-served-by"}
#include "jester_policy.h"

static jp_str request_name, request_value, response_name;

static int setup(jp_str config) {
    if (!jp_json_string(config, "request_header", &request_name)) request_name = jp_cstr("x-policy");
    if (!jp_json_string(config, "request_value", &request_value)) request_value = jp_cstr("on");
    if (!jp_json_string(config, "response_header", &response_name)) response_name = jp_cstr("x-served-by");
    return 0;
}

static void pre_route(const jp_context *ctx) {
    (void)ctx;
    jp_set_header_str(request_name, request_value);
}

static void post_response(const jp_context *ctx) {
    (void)ctx;
    jp_set_header_str(response_name, jp_cstr("jester-policy"));
}

JESTER_POLICY_INIT(setup)
JESTER_POLICY_PRE_ROUTE(pre_route)
JESTER_POLICY_POST_RESPONSE(post_response)
