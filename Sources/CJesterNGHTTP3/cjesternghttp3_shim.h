// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterNGHTTP3: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
//
// nghttp3 0.8's friendly names are macros over `*_versioned` functions; the wrappers pass the struct versions this
// header was compiled against, as the macros do.
#pragma once
#include <nghttp3/nghttp3.h>

static inline void cjester_nghttp3_settings_default(nghttp3_settings *settings) {
    nghttp3_settings_default(settings);
}

static inline int cjester_nghttp3_conn_server_new(nghttp3_conn **pconn, const nghttp3_callbacks *callbacks,
                                                  const nghttp3_settings *settings, void *user_data) {
    return nghttp3_conn_server_new(pconn, callbacks, settings, NULL, user_data);
}

static inline int cjester_nghttp3_conn_client_new(nghttp3_conn **pconn, const nghttp3_callbacks *callbacks,
                                                  const nghttp3_settings *settings, void *user_data) {
    return nghttp3_conn_client_new(pconn, callbacks, settings, NULL, user_data);
}
