// SPDX-License-Identifier: Apache-2.0
//
// The benchmark's trivial header-only policy (bench/pair.py --policy STAGE): at whichever stage it is attached,
// it sets one field (on the request at pre_route and pre_upstream, on the response at post_response), the
// smallest change a policy makes, so the pair measures what a policy call itself costs.
#include "jester_policy.h"

static int setup(jp_str config) { (void)config; return 0; }
static void on_request(const jp_context *ctx) { (void)ctx; jp_set_header("x-policy", "1"); }
static void on_response(const jp_context *ctx) { (void)ctx; jp_set_header("x-policy", "1"); }

JESTER_POLICY_INIT(setup)
JESTER_POLICY_PRE_ROUTE(on_request)
JESTER_POLICY_PRE_UPSTREAM(on_request)
JESTER_POLICY_POST_RESPONSE(on_response)
