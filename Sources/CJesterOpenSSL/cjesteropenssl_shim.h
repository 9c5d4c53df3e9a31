// Shim for CJesterOpenSSL: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
#pragma once
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>

// OpenSSL 3.0 exposes these as macros over SSL_CTX_ctrl; Swift cannot import function-like macros.
static inline long cjester_SSL_CTX_set_min_proto_version(SSL_CTX *context, int version) {
    return SSL_CTX_set_min_proto_version(context, version);
}
static inline long cjester_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
