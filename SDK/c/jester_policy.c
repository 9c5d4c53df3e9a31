// SPDX-License-Identifier: Apache-2.0
//
// The SDK's runtime: cabi_realloc (an arena), abi-version, the host imports, the result builders and a few
// reading helpers. Freestanding: no libc, so it builds with clang --target=wasm32 and zig cc alike.
#include "jester_policy.h"

#define JP_IMPORT(name) __attribute__((import_module("jester:policy/host@1.0.0"), import_name(name)))

JP_IMPORT("log") extern void jp__host_log(uint32_t level, const char *ptr, uint32_t len);
JP_IMPORT("counter-add") extern void jp__host_counter_add(const char *ptr, uint32_t len, int64_t delta);
JP_IMPORT("metadata-get") extern void jp__host_metadata_get(const char *ptr, uint32_t len, void *ret);
JP_IMPORT("metadata-set")
extern uint32_t jp__host_metadata_set(const char *kp, uint32_t kl, const char *vp, uint32_t vl);

// --- libc pieces the compiler may call (with -mbulk-memory these builtins are memory.copy / memory.fill) -------

void *memcpy(void *dst, const void *src, size_t n) {
    __builtin_memcpy(dst, src, n);
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    __builtin_memmove(dst, src, n);
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    __builtin_memset(dst, c, n);
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

static size_t jp__strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

// --- The arena -----------------------------------------------------------------------------------------------
//
// Everything below `floor` was allocated before or during init and lasts; a stage call's allocations (the
// context the host writes, the result) start at `floor` and are dropped at the first allocation after the call
// returned.

extern unsigned char __heap_base;
static uintptr_t jp__top, jp__floor;
static int jp__in_call, jp__call_done;

static void *jp__arena(uint32_t size, uint32_t align) {
    if (jp__top == 0) jp__top = jp__floor = (uintptr_t)&__heap_base;
    if (jp__call_done && !jp__in_call) {
        jp__top = jp__floor;
        jp__call_done = 0;
    }
    if (align == 0) align = 1;
    uintptr_t start = (jp__top + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t end = start + size;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        uintptr_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
    }
    jp__top = end;
    return (void *)start;
}

/// The canonical ABI's allocator: Jester calls it for the configuration and each call's context.
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *old, uint32_t old_size, uint32_t align,
                                                                 uint32_t new_size) {
    void *fresh = jp__arena(new_size, align);
    if (old && old_size) __builtin_memcpy(fresh, old, old_size < new_size ? old_size : new_size);
    return fresh;
}

__attribute__((export_name("abi-version"))) uint32_t jp__abi_version(void) { return 0x00010000; }

void *jp_alloc(uint32_t size) { return jp__arena(size, 8); }

// --- Results -------------------------------------------------------------------------------------------------

typedef struct {
    uint8_t tag;
    union {
        jp_header header;
        jp_str text;
        uint32_t number;
        jp_bytes bytes;
    } u;
} jp__mutation;

typedef struct {
    uint8_t tag;
    union {
        struct {
            jp__mutation *ptr;
            uint32_t len;
        } mutations;
        struct {
            uint16_t status;
            jp_headers headers;
            jp_bytes body;
        } response;
        jp_str reason;
    } u;
} jp__action;

_Static_assert(sizeof(jp__mutation) == 20, "ABI v1: mutation is 20 bytes");
_Static_assert(sizeof(jp__action) == 24, "ABI v1: action is 24 bytes");

static jp__action *jp__result;
static uint32_t jp__mutation_cap, jp__header_cap;
static jp_str jp__init_message;

void jp__begin(void) {
    jp__in_call = 1;
    jp__result = jp__arena(sizeof(jp__action), 4);
    __builtin_memset(jp__result, 0, sizeof(jp__action));
    jp__mutation_cap = jp__header_cap = 0;
}

void *jp__finish(void) {
    jp__in_call = 0;
    jp__call_done = 1;
    return jp__result;
}

void jp__begin_init(void) { jp__init_message = (jp_str){0, 0}; }

void *jp__finish_init(int ok) {
    static struct {
        uint8_t tag;
        jp_str error;
    } result;
    result.tag = ok ? 0 : 1;
    result.error = jp__init_message;
    if (!ok && result.error.len == 0) result.error = jp_cstr("refused");
    jp__floor = jp__top; // what init allocated (the configuration too) lasts
    return &result;
}

void jp_init_error(const char *message) { jp__init_message = jp_str_copy(jp_cstr(message)); }

static jp__mutation *jp__push(uint8_t tag) {
    if (jp__result->tag != 0) return 0;  // after respond or deny, mutations do not matter
    uint32_t len = jp__result->u.mutations.len;
    if (len == jp__mutation_cap) {
        uint32_t cap = jp__mutation_cap ? jp__mutation_cap * 2 : 8;
        jp__mutation *grown = jp__arena(cap * sizeof(jp__mutation), 4);
        if (len) __builtin_memcpy(grown, jp__result->u.mutations.ptr, len * sizeof(jp__mutation));
        jp__result->u.mutations.ptr = grown;
        jp__mutation_cap = cap;
    }
    jp__mutation *m = &jp__result->u.mutations.ptr[len];
    __builtin_memset(m, 0, sizeof *m);
    m->tag = tag;
    jp__result->u.mutations.len = len + 1;
    return m;
}

static void jp__push_header(uint8_t tag, jp_str name, jp_str value) {
    jp__mutation *m = jp__push(tag);
    if (m) m->u.header = (jp_header){name, value};
}

static void jp__push_text(uint8_t tag, jp_str text) {
    jp__mutation *m = jp__push(tag);
    if (m) m->u.text = text;
}

static void jp__push_number(uint8_t tag, uint32_t number) {
    jp__mutation *m = jp__push(tag);
    if (m) m->u.number = number;
}

void jp_set_header(const char *name, const char *value) { jp__push_header(0, jp_cstr(name), jp_cstr(value)); }
void jp_set_header_str(jp_str name, jp_str value) { jp__push_header(0, name, value); }
void jp_add_header(const char *name, const char *value) { jp__push_header(1, jp_cstr(name), jp_cstr(value)); }
void jp_remove_header(const char *name) { jp__push_text(2, jp_cstr(name)); }
void jp_set_method(const char *method) { jp__push_text(3, jp_cstr(method)); }
void jp_set_path(jp_str path) { jp__push_text(4, path); }
void jp_set_query(jp_str query) { jp__push_text(5, query); }
void jp_set_route(jp_str route) { jp__push_text(6, route); }
void jp_add_route_tag(jp_str tag) { jp__push_text(7, tag); }
void jp_set_upstream(jp_str upstream) { jp__push_text(8, upstream); }
void jp_set_upstream_timeout_ms(uint32_t milliseconds) { jp__push_number(9, milliseconds); }
void jp_set_upstream_retries(uint32_t retries) { jp__push_number(10, retries); }

void jp_set_body(jp_bytes body) {
    jp__mutation *m = jp__push(11);
    if (m) m->u.bytes = body;
}

void jp_respond_bytes(uint16_t status, jp_bytes body) {
    jp__result->tag = 1;
    jp__result->u.response.status = status;
    jp__result->u.response.headers = (jp_headers){0, 0};
    jp__result->u.response.body = body;
    jp__header_cap = 0;
}

void jp_respond(uint16_t status, const char *body) {
    jp_str text = jp_cstr(body);
    jp_respond_bytes(status, (jp_bytes){(const uint8_t *)text.ptr, text.len});
}

void jp_respond_header(const char *name, const char *value) {
    if (jp__result->tag != 1) return;
    jp_headers *headers = &jp__result->u.response.headers;
    if (headers->len == jp__header_cap) {
        uint32_t cap = jp__header_cap ? jp__header_cap * 2 : 4;
        jp_header *grown = jp__arena(cap * sizeof(jp_header), 4);
        if (headers->len) __builtin_memcpy(grown, headers->ptr, headers->len * sizeof(jp_header));
        headers->ptr = grown;
        jp__header_cap = cap;
    }
    ((jp_header *)headers->ptr)[headers->len++] = (jp_header){jp_cstr(name), jp_cstr(value)};
}

void jp_deny(const char *reason) {
    jp__result->tag = 2;
    jp__result->u.reason = jp_cstr(reason);
}

// --- Reading -------------------------------------------------------------------------------------------------

jp_str jp_cstr(const char *text) { return (jp_str){text, text ? (uint32_t)jp__strlen(text) : 0}; }

int jp_str_eq(jp_str a, const char *b) {
    size_t n = jp__strlen(b);
    return a.len == n && memcmp(a.ptr, b, n) == 0;
}

int jp_str_starts_with(jp_str a, const char *prefix) {
    size_t n = jp__strlen(prefix);
    return a.len >= n && memcmp(a.ptr, prefix, n) == 0;
}

const jp_header *jp_find_header(jp_headers headers, const char *name) {
    for (uint32_t i = 0; i < headers.len; i++) {
        if (jp_str_eq(headers.ptr[i].name, name)) return &headers.ptr[i];
    }
    return 0;
}

jp_str jp_str_copy(jp_str text) {
    char *copy = jp__arena(text.len, 1);
    if (text.len) __builtin_memcpy(copy, text.ptr, text.len);
    return (jp_str){copy, text.len};
}

// A minimal reader for flat JSON objects: finds "key" at the top level and the value after its colon.
static int jp__json_value(jp_str json, const char *key, uint32_t *at) {
    size_t klen = jp__strlen(key);
    uint32_t depth = 0;
    for (uint32_t i = 0; i < json.len; i++) {
        char c = json.ptr[i];
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') depth--;
        else if (c == '"') {
            uint32_t start = i + 1, end = start;
            while (end < json.len && json.ptr[end] != '"') end += json.ptr[end] == '\\' ? 2 : 1;
            if (end >= json.len) return 0;
            uint32_t next = end + 1;
            while (next < json.len && (json.ptr[next] == ' ' || json.ptr[next] == '\n' || json.ptr[next] == '\t'
                                       || json.ptr[next] == '\r'))
                next++;
            if (depth == 1 && next < json.len && json.ptr[next] == ':' && end - start == klen
                && memcmp(json.ptr + start, key, klen) == 0) {
                next++;
                while (next < json.len && (json.ptr[next] == ' ' || json.ptr[next] == '\n' || json.ptr[next] == '\t'
                                           || json.ptr[next] == '\r'))
                    next++;
                *at = next;
                return 1;
            }
            i = end;
        }
    }
    return 0;
}

int jp_json_string(jp_str json, const char *key, jp_str *out) {
    uint32_t at;
    if (!jp__json_value(json, key, &at) || at >= json.len || json.ptr[at] != '"') return 0;
    uint32_t end = at + 1;
    while (end < json.len && json.ptr[end] != '"') end += json.ptr[end] == '\\' ? 2 : 1;
    if (end >= json.len) return 0;
    *out = (jp_str){json.ptr + at + 1, end - at - 1};
    return 1;
}

int jp_json_uint(jp_str json, const char *key, uint32_t *out) {
    uint32_t at;
    if (!jp__json_value(json, key, &at) || at >= json.len || json.ptr[at] < '0' || json.ptr[at] > '9') return 0;
    uint32_t value = 0;
    while (at < json.len && json.ptr[at] >= '0' && json.ptr[at] <= '9') value = value * 10 + (json.ptr[at++] - '0');
    *out = value;
    return 1;
}

// --- Host functions ------------------------------------------------------------------------------------------

void jp_log(jp_level level, const char *message) {
    jp_str text = jp_cstr(message);
    jp__host_log(level, text.ptr, text.len);
}

void jp_log_str(jp_level level, jp_str message) { jp__host_log(level, message.ptr, message.len); }

void jp_counter_add(const char *name, int64_t delta) {
    jp_str text = jp_cstr(name);
    jp__host_counter_add(text.ptr, text.len, delta);
}

int jp_metadata_get(const char *key, jp_str *out) {
    struct {
        uint8_t is_some;
        jp_str value;
    } ret;
    jp_str k = jp_cstr(key);
    jp__host_metadata_get(k.ptr, k.len, &ret);
    if (!ret.is_some) return 0;
    *out = ret.value;
    return 1;
}

int jp_metadata_set(const char *key, jp_str value) {
    jp_str k = jp_cstr(key);
    return (int)jp__host_metadata_set(k.ptr, k.len, value.ptr, value.len);
}
