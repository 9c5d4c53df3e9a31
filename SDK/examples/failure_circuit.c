// SPDX-License-Identifier: Apache-2.0
//
// Rate-of-failure circuit: watches the statuses of the last `window` responses (post-response); once at least
// `min_requests` were seen and `threshold_percent` of them were 5xx, it opens and answers the next
// `open_requests` requests itself with 503 and Retry-After (pre-route), then lets one through to probe (half
// open): a good answer closes it, a failure opens it again. ABI v1 has no clock, so the circuit counts requests,
// not seconds. The state is static: it lives as long as the worker's instance (one per worker).
// Configuration: {"window": 20, "min_requests": 10, "threshold_percent": 50, "open_requests": 50}
#include "jester_policy.h"

#define MAX_WINDOW 256
static uint32_t window = 20, min_requests = 10, threshold = 50, open_requests = 50;
static uint8_t outcomes[MAX_WINDOW];  // 1: a failure
static uint32_t seen, next_slot, failures;
static uint32_t open_left;  // requests still to refuse while open
static int probing;         // the circuit let one request through while half open

static int setup(jp_str config) {
    jp_json_uint(config, "window", &window);
    jp_json_uint(config, "min_requests", &min_requests);
    jp_json_uint(config, "threshold_percent", &threshold);
    jp_json_uint(config, "open_requests", &open_requests);
    if (window == 0 || window > MAX_WINDOW || min_requests > window || threshold == 0 || threshold > 100) {
        jp_init_error("window must be 1-256, min_requests at most window, threshold_percent 1-100");
        return 1;
    }
    return 0;
}

static void reset_window(void) {
    __builtin_memset(outcomes, 0, sizeof outcomes);
    seen = next_slot = failures = 0;
}

static void pre_route(const jp_context *ctx) {
    (void)ctx;
    if (open_left > 0) {
        open_left--;
        if (open_left == 0) probing = 1;
        jp_counter_add("short_circuited", 1);
        jp_respond(503, "service unavailable (circuit open)\n");
        jp_respond_header("retry-after", "1");
        jp_respond_header("content-type", "text/plain");
    }
}

static void post_response(const jp_context *ctx) {
    uint8_t failed = ctx->status >= 500;
    if (probing) {
        probing = 0;
        reset_window();
        if (failed) {
            open_left = open_requests;
            jp_log(JP_WARN, "circuit: probe failed, open again");
        } else {
            jp_log(JP_INFO, "circuit: probe succeeded, closed");
        }
        return;
    }
    if (seen == window) failures -= outcomes[next_slot];
    else seen++;
    outcomes[next_slot] = failed;
    failures += failed;
    next_slot = (next_slot + 1) % window;
    if (seen >= min_requests && failures * 100 >= threshold * seen) {
        open_left = open_requests;
        reset_window();
        jp_counter_add("opened", 1);
        jp_log(JP_WARN, "circuit: failure rate over the threshold, open");
    }
}

JESTER_POLICY_INIT(setup)
JESTER_POLICY_PRE_ROUTE(pre_route)
JESTER_POLICY_POST_RESPONSE(post_response)
