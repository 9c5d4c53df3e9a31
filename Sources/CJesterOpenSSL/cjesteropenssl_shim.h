// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterOpenSSL: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
#pragma once
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <openssl/ocsp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

// OpenSSL 3.0 exposes these as macros over SSL_CTX_ctrl / SSL_ctrl; Swift cannot import function-like macros.
static inline long cjester_SSL_CTX_set_min_proto_version(SSL_CTX *context, int version) {
    return SSL_CTX_set_min_proto_version(context, version);
}
static inline long cjester_SSL_CTX_set_max_proto_version(SSL_CTX *context, int version) {
    return SSL_CTX_set_max_proto_version(context, version);
}
static inline long cjester_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline long cjester_SSL_CTX_set_mode(SSL_CTX *context, long mode) {
    return SSL_CTX_set_mode(context, mode);
}
static inline long cjester_SSL_CTX_set_session_cache_mode(SSL_CTX *context, long mode) {
    return SSL_CTX_set_session_cache_mode(context, mode);
}
static inline long cjester_SSL_CTX_add0_chain_cert(SSL_CTX *context, X509 *certificate) {
    return SSL_CTX_add0_chain_cert(context, certificate);
}
static inline long cjester_SSL_CTX_set_tlsext_servername_callback(
    SSL_CTX *context, int (*callback)(SSL *, int *, void *)) {
    return SSL_CTX_set_tlsext_servername_callback(context, callback);
}
static inline long cjester_SSL_CTX_set_tlsext_status_cb(SSL_CTX *context, int (*callback)(SSL *, void *)) {
    return SSL_CTX_set_tlsext_status_cb(context, callback);
}
static inline long cjester_SSL_set_tlsext_status_ocsp_resp(SSL *ssl, unsigned char *response, long length) {
    return SSL_set_tlsext_status_ocsp_resp(ssl, response, length);
}
static inline long cjester_SSL_set_tlsext_status_type(SSL *ssl, int type) {
    return SSL_set_tlsext_status_type(ssl, type);
}
static inline long cjester_SSL_get_tlsext_status_ocsp_resp(SSL *ssl, const unsigned char **response) {
    return SSL_get_tlsext_status_ocsp_resp(ssl, response);
}
static inline long cjester_SSL_CTX_set1_groups_list(SSL_CTX *context, const char *groups) {
    return SSL_CTX_set1_groups_list(context, groups);
}
static inline int cjester_SSL_CTX_set_app_data(SSL_CTX *context, void *data) {
    return SSL_CTX_set_app_data(context, data);
}
static inline void *cjester_SSL_CTX_get_app_data(const SSL_CTX *context) {
    return SSL_CTX_get_app_data(context);
}
static inline int cjester_SSL_set_app_data(SSL *ssl, void *data) {
    return SSL_set_app_data(ssl, data);
}
static inline void *cjester_SSL_get_app_data(const SSL *ssl) {
    return SSL_get_app_data(ssl);
}
// The GENERAL_NAME stack of a certificate's subjectAltName, flattened: Swift cannot use the DEFINE_STACK_OF
// macros' type-safe wrappers portably.
static inline int cjester_general_names_count(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}
static inline const GENERAL_NAME *cjester_general_names_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}
static inline void cjester_general_names_free(GENERAL_NAMES *names) {
    GENERAL_NAMES_free(names);
}

// Option and flag sets built from OpenSSL 3.0's SSL_OP_BIT() macros, which Swift cannot evaluate.
static inline uint64_t cjester_server_options(void) {
    return SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
}
static inline uint64_t cjester_option_no_ticket(void) { return SSL_OP_NO_TICKET; }
static inline unsigned long cjester_name_flags_rfc2253(void) { return XN_FLAG_RFC2253; }

// EVP_PKEY_fromdata's selection for a public key: a bitwise OR of OSSL_KEYMGMT_SELECT_* macros.
static inline int cjester_evp_pkey_public_key_selection(void) { return EVP_PKEY_PUBLIC_KEY; }
