// SPDX-License-Identifier: Apache-2.0
//
// jester_policy.h: write a Jester policy in C (ABI v1, SDK/wit/jester-policy.wit; jester-policy(7)).
//
// A policy is a core Wasm module built from your file and jester_policy.c:
//
//   clang --target=wasm32 -O2 -ffreestanding -nostdlib -mbulk-memory -Wl,--no-entry \
//         -o policy.wasm policy.c jester_policy.c
//   python3 -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib -mbulk-memory -Wl,--no-entry ...
//
// Your file names its entry points with the macros at the end (JESTER_POLICY_INIT is required, and at least one
// stage), reads the context it is given, and says what to do with the builders: jp_set_header() and the other
// mutations (the request goes on with them), jp_respond() (answer yourself) or jp_deny() (refuse).
//
// Memory: what is allocated before and during init (the configuration string included) lasts as long as the
// instance; what a stage call allocates (the context included) lasts until the call returns. Static variables
// persist between requests (one instance serves one worker's requests, one at a time); never keep a pointer
// into a context after the call returns.
#ifndef JESTER_POLICY_H
#define JESTER_POLICY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A string: UTF-8, not NUL-terminated.
typedef struct {
    const char *ptr;
    uint32_t len;
} jp_str;

/// Bytes (a body).
typedef struct {
    const uint8_t *ptr;
    uint32_t len;
} jp_bytes;

/// A field; names are lowercase in contexts.
typedef struct {
    jp_str name;
    jp_str value;
} jp_header;

typedef struct {
    const jp_header *ptr;
    uint32_t len;
} jp_headers;

typedef struct {
    uint8_t is_some;
    jp_bytes value;
} jp_opt_bytes;

typedef struct {
    uint8_t is_some;
    jp_str value;
} jp_opt_str;

typedef enum { JP_PRE_ROUTE = 0, JP_PRE_UPSTREAM = 1, JP_POST_RESPONSE = 2 } jp_stage;

/// The context of one stage call (ABI v1's `context`). Fields a stage does not have are empty. A field added in
/// a later v1.x is read only when `size` covers it (JP_HAS_FIELD).
typedef struct {
    uint32_t abi_minor;
    uint32_t size;
    uint8_t stage;
    jp_str method;
    jp_str scheme;
    jp_str authority;
    jp_str path;
    jp_str query;
    jp_str client_address;
    jp_headers request_headers;
    jp_opt_bytes request_body;
    jp_opt_str route;
    uint16_t status;
    jp_headers response_headers;
    jp_opt_bytes response_body;
} jp_context;

#define JP_HAS_FIELD(ctx, field) \
    ((ctx)->size >= offsetof(jp_context, field) + sizeof(((jp_context *)0)->field))

_Static_assert(sizeof(jp_context) == 116, "jp_context must match ABI v1's context layout");
_Static_assert(offsetof(jp_context, request_headers) == 60, "ABI v1 layout");
_Static_assert(offsetof(jp_context, status) == 92, "ABI v1 layout");
_Static_assert(offsetof(jp_context, response_body) == 104, "ABI v1 layout");

typedef enum { JP_DEBUG = 0, JP_INFO = 1, JP_WARN = 2, JP_ERROR = 3 } jp_level;

// --- Reading -------------------------------------------------------------------------------------------------

/// A C string as a jp_str.
jp_str jp_cstr(const char *text);
/// Whether `a` holds exactly the text of `b`.
int jp_str_eq(jp_str a, const char *b);
/// Whether `a` starts with `prefix`.
int jp_str_starts_with(jp_str a, const char *prefix);
/// The first field called `name` (lowercase), or NULL.
const jp_header *jp_find_header(jp_headers headers, const char *name);
/// Memory for this call (or, during init, for the instance's life); never NULL (traps when memory runs out).
void *jp_alloc(uint32_t size);
/// A copy of `text` in memory from jp_alloc.
jp_str jp_str_copy(jp_str text);
/// The value of a top-level string member `key` of the JSON object `json` (escapes left as written); 1 if found.
int jp_json_string(jp_str json, const char *key, jp_str *out);
/// The value of a top-level non-negative integer member `key` of `json`; 1 if found.
int jp_json_uint(jp_str json, const char *key, uint32_t *out);

// --- Host functions ------------------------------------------------------------------------------------------

void jp_log(jp_level level, const char *message);
void jp_log_str(jp_level level, jp_str message);
/// Adds `delta` to the policy's counter `name` ([a-z0-9_], at most 64 bytes).
void jp_counter_add(const char *name, int64_t delta);
/// The request's metadata entry `key` (this policy's) or "policy-id/key" (another's); 1 if found.
int jp_metadata_get(const char *key, jp_str *out);
/// Sets this policy's entry `key` (no '/'); 0 when the bag is full.
int jp_metadata_set(const char *key, jp_str value);

// --- What to do (in a stage call) ----------------------------------------------------------------------------

/// Mutations: the request (pre-route, pre-upstream) or the response (post-response) goes on with them, in order.
void jp_set_header(const char *name, const char *value);
void jp_set_header_str(jp_str name, jp_str value);
void jp_add_header(const char *name, const char *value);
void jp_remove_header(const char *name);
void jp_set_method(const char *method);
void jp_set_path(jp_str path);
void jp_set_query(jp_str query);
void jp_set_route(jp_str route);
void jp_add_route_tag(jp_str tag);
void jp_set_upstream(jp_str upstream);
void jp_set_upstream_timeout_ms(uint32_t milliseconds);
void jp_set_upstream_retries(uint32_t retries);
void jp_set_body(jp_bytes body);

/// Answer with `status` (200-599) and `body` instead; add fields with jp_respond_header.
void jp_respond(uint16_t status, const char *body);
void jp_respond_bytes(uint16_t status, jp_bytes body);
void jp_respond_header(const char *name, const char *value);
/// Refuse with the policy's configured error status; `reason` goes to the access log.
void jp_deny(const char *reason);

/// In init: refuse the configuration with this message.
void jp_init_error(const char *message);

// --- Entry points --------------------------------------------------------------------------------------------

// What the macros below call; not for policies.
void jp__begin_init(void);
void *jp__finish_init(int ok);
void jp__begin(void);
void *jp__finish(void);

/// `int fn(jp_str config)`: 0 accepts the JSON configuration; anything else refuses it (with jp_init_error's
/// message). Required.
#define JESTER_POLICY_INIT(fn) \
    __attribute__((export_name("init"))) void *jp__export_init(const char *config, uint32_t len) { \
        jp__begin_init(); \
        jp_str c = {config, len}; \
        return jp__finish_init(fn(c) == 0); \
    }

#define JP__STAGE(export, symbol, fn) \
    __attribute__((export_name(export))) void *symbol(const jp_context *ctx) { \
        jp__begin(); \
        fn(ctx); \
        return jp__finish(); \
    }

/// `void fn(const jp_context *ctx)` for each stage the policy implements.
#define JESTER_POLICY_PRE_ROUTE(fn) JP__STAGE("on-pre-route", jp__export_pre_route, fn)
#define JESTER_POLICY_PRE_UPSTREAM(fn) JP__STAGE("on-pre-upstream", jp__export_pre_upstream, fn)
#define JESTER_POLICY_POST_RESPONSE(fn) JP__STAGE("on-post-response", jp__export_post_response, fn)

#ifdef __cplusplus
}
#endif

#endif
