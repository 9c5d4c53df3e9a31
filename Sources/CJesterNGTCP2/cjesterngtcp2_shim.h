// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterNGTCP2: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions, constants computed with sizeof). Nothing else belongs here.
//
// ngtcp2 0.12's friendly names are macros over `*_versioned` functions that pass the struct versions this header
// was compiled against; the wrappers below do the same, so Swift never spells a version number.
#pragma once
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <gnutls/crypto.h>

static const uint32_t CJESTER_NGTCP2_PROTO_VER_V1 = NGTCP2_PROTO_VER_V1;
static const size_t CJESTER_NGTCP2_MAX_RETRY_TOKENLEN = NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN;
static const size_t CJESTER_NGTCP2_MAX_REGULAR_TOKENLEN = NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN;

static inline void cjester_ngtcp2_settings_default(ngtcp2_settings *settings) {
    ngtcp2_settings_default(settings);
}

static inline void cjester_ngtcp2_transport_params_default(ngtcp2_transport_params *params) {
    ngtcp2_transport_params_default(params);
}

static inline int cjester_ngtcp2_conn_server_new(
    ngtcp2_conn **pconn, const ngtcp2_cid *dcid, const ngtcp2_cid *scid, const ngtcp2_path *path,
    uint32_t client_chosen_version, const ngtcp2_callbacks *callbacks, const ngtcp2_settings *settings,
    const ngtcp2_transport_params *params, void *user_data) {
    return ngtcp2_conn_server_new(pconn, dcid, scid, path, client_chosen_version, callbacks, settings, params,
                                  NULL, user_data);
}

static inline int cjester_ngtcp2_conn_client_new(
    ngtcp2_conn **pconn, const ngtcp2_cid *dcid, const ngtcp2_cid *scid, const ngtcp2_path *path,
    uint32_t client_chosen_version, const ngtcp2_callbacks *callbacks, const ngtcp2_settings *settings,
    const ngtcp2_transport_params *params, void *user_data) {
    return ngtcp2_conn_client_new(pconn, dcid, scid, path, client_chosen_version, callbacks, settings, params,
                                  NULL, user_data);
}

static inline int cjester_ngtcp2_conn_read_pkt(ngtcp2_conn *conn, const ngtcp2_path *path, uint32_t ecn,
                                               const uint8_t *pkt, size_t pktlen, ngtcp2_tstamp ts) {
    ngtcp2_pkt_info pi = {.ecn = ecn};
    return ngtcp2_conn_read_pkt(conn, path, &pi, pkt, pktlen, ts);
}

static inline ngtcp2_ssize cjester_ngtcp2_conn_writev_stream(
    ngtcp2_conn *conn, ngtcp2_path *path, uint32_t *ecn, uint8_t *dest, size_t destlen, ngtcp2_ssize *pdatalen,
    uint32_t flags, int64_t stream_id, const ngtcp2_vec *datav, size_t datavcnt, ngtcp2_tstamp ts) {
    ngtcp2_pkt_info pi = {0};
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn, path, &pi, dest, destlen, pdatalen, flags, stream_id, datav,
                                               datavcnt, ts);
    *ecn = pi.ecn;
    return n;
}

static inline ngtcp2_ssize cjester_ngtcp2_conn_write_connection_close(
    ngtcp2_conn *conn, ngtcp2_path *path, uint8_t *dest, size_t destlen,
    const ngtcp2_connection_close_error *ccerr, ngtcp2_tstamp ts) {
    return ngtcp2_conn_write_connection_close(conn, path, NULL, dest, destlen, ccerr, ts);
}

/// A server session checks any client certificate during the handshake: it must chain to the credentials' trust
/// and be meant for clients (extendedKeyUsage clientAuth, or none), as OpenSSL checks them for TCP listeners. A
/// client that sends none passes here: GnuTLS itself refuses it when the certificate is required.
static int cjester_gnutls_verify_client(gnutls_session_t session) {
    static gnutls_typed_vdata_st purpose = { GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0 };
    unsigned int count = 0;
    if (gnutls_certificate_get_peers(session, &count) == NULL || count == 0) {
        return 0;
    }
    unsigned int status = 0;
    if (gnutls_certificate_verify_peers(session, &purpose, 1, &status) < 0 || status != 0) {
        return -1;
    }
    return 0;
}

static inline void cjester_gnutls_verify_client_certificates(gnutls_session_t session) {
    gnutls_session_set_verify_function(session, cjester_gnutls_verify_client);
}

/// gnutls_free is a macro over a mutable global function pointer, which Swift will not call directly.
static inline void cjester_gnutls_free(void *pointer) {
    gnutls_free(pointer);
}
