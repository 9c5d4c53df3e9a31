// SPDX-License-Identifier: Apache-2.0
//
// JSON field redactor: in JSON response bodies, replaces the value of every member named in the configuration
// (at any depth) with "[redacted]", and logs how many it replaced. Bodies that are not JSON go through.
// Configuration: {"fields": "password,ssn"} (a comma-separated list)
#include "jester_policy.h"

#define MAX_FIELDS 16
static jp_str fields[MAX_FIELDS];
static uint32_t field_count;

static int setup(jp_str config) {
    jp_str list;
    if (!jp_json_string(config, "fields", &list) || list.len == 0) {
        jp_init_error("fields (a comma-separated list of member names) is required");
        return 1;
    }
    uint32_t start = 0;
    for (uint32_t i = 0; i <= list.len && field_count < MAX_FIELDS; i++) {
        if (i == list.len || list.ptr[i] == ',') {
            if (i > start) fields[field_count++] = (jp_str){list.ptr + start, i - start};
            start = i + 1;
        }
    }
    return 0;
}

static int is_field(const char *name, uint32_t len) {
    for (uint32_t i = 0; i < field_count; i++) {
        if (fields[i].len == len && __builtin_memcmp(fields[i].ptr, name, len) == 0) return 1;
    }
    return 0;
}

// The end of the JSON value starting at `at` (a string, or a scalar; objects and arrays are kept, and their
// members are visited as the scan goes on).
static uint32_t value_end(const uint8_t *body, uint32_t len, uint32_t at) {
    if (body[at] == '"') {
        uint32_t end = at + 1;
        while (end < len && body[end] != '"') end += body[end] == '\\' ? 2 : 1;
        return end < len ? end + 1 : len;
    }
    uint32_t end = at;
    while (end < len && body[end] != ',' && body[end] != '}' && body[end] != ']' && body[end] != ' '
           && body[end] != '\n')
        end++;
    return end;
}

static void post_response(const jp_context *ctx) {
    const jp_header *type = jp_find_header(ctx->response_headers, "content-type");
    if (!type || !jp_str_starts_with(type->value, "application/json") || !ctx->response_body.is_some) return;
    const uint8_t *body = ctx->response_body.value.ptr;
    uint32_t len = ctx->response_body.value.len;
    static const char replacement[] = "\"[redacted]\"";
    const uint32_t rlen = sizeof replacement - 1;
    // at most one replacement per 3 input bytes ("":x), so this bound always holds
    uint8_t *out = jp_alloc(len + (len / 3 + 1) * rlen);
    uint32_t o = 0, i = 0, count = 0;
    while (i < len) {
        if (body[i] != '"') {
            out[o++] = body[i++];
            continue;
        }
        uint32_t start = i + 1, end = start;
        while (end < len && body[end] != '"') end += body[end] == '\\' ? 2 : 1;
        if (end >= len) break;  // an unterminated string: the rest is copied as it is
        __builtin_memcpy(out + o, body + i, end + 1 - i);
        o += end + 1 - i;
        i = end + 1;
        uint32_t colon = i;
        while (colon < len && (body[colon] == ' ' || body[colon] == '\n' || body[colon] == '\t')) colon++;
        if (colon >= len || body[colon] != ':' || !is_field((const char *)body + start, end - start)) continue;
        uint32_t value = colon + 1;
        while (value < len && (body[value] == ' ' || body[value] == '\n' || body[value] == '\t')) value++;
        if (value >= len || body[value] == '{' || body[value] == '[') continue;  // containers: their members
        out[o++] = ':';
        __builtin_memcpy(out + o, replacement, rlen);
        o += rlen;
        i = value_end(body, len, value);
        count++;
    }
    while (i < len) out[o++] = body[i++];
    if (count == 0) return;
    jp_set_body((jp_bytes){out, o});
    jp_counter_add("redacted_fields", (int64_t)count);
    jp_log(JP_INFO, "redacted fields in a JSON response");
}

JESTER_POLICY_INIT(setup)
JESTER_POLICY_POST_RESPONSE(post_response)
