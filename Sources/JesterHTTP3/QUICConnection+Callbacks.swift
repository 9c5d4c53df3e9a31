// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

// ngtcp2's callbacks (C → Swift). Each recovers the connection from its user data, never throws, and returns 0,
// or NGTCP2_ERR_CALLBACK_FAILURE when the connection must fail. The TLS and packet-protection work is done by
// the GnuTLS crypto helper's own callbacks, assigned directly.

extension QUICConnection {
    /// The callback table for a role: the crypto helper's functions plus Jester's stream and ID handlers.
    static func callbacks(for role: Role) -> ngtcp2_callbacks {
        var callbacks = ngtcp2_callbacks()
        if role == .server {
            callbacks.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb
            callbacks.recv_tx_key = onKeyInstalled
        } else {
            callbacks.client_initial = ngtcp2_crypto_client_initial_cb
            callbacks.recv_retry = ngtcp2_crypto_recv_retry_cb
            callbacks.recv_rx_key = onKeyInstalled
            callbacks.recv_new_token = onNewToken
        }
        callbacks.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb
        callbacks.encrypt = ngtcp2_crypto_encrypt_cb
        callbacks.decrypt = ngtcp2_crypto_decrypt_cb
        callbacks.hp_mask = ngtcp2_crypto_hp_mask_cb
        callbacks.update_key = ngtcp2_crypto_update_key_cb
        callbacks.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb
        callbacks.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb
        callbacks.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb
        callbacks.version_negotiation = ngtcp2_crypto_version_negotiation_cb
        callbacks.handshake_completed = onHandshakeCompleted
        callbacks.recv_stream_data = onStreamData
        callbacks.acked_stream_data_offset = onStreamDataAcknowledged
        callbacks.stream_close = onStreamClose
        callbacks.stream_reset = onStreamReset
        callbacks.stream_stop_sending = onStopSending
        callbacks.extend_max_remote_streams_bidi = onRemoteBidirectionalStreamsExtended
        callbacks.extend_max_stream_data = onStreamDataLimitExtended
        callbacks.rand = fillRandom
        callbacks.get_new_connection_id = onNewConnectionID
        callbacks.remove_connection_id = onConnectionIDRemoved
        return callbacks
    }

    fileprivate static func from(_ user: UnsafeMutableRawPointer?) -> QUICConnection {
        Unmanaged<QUICConnection>.fromOpaque(user!).takeUnretainedValue()
    }
}

private let failure = NGTCP2_ERR_CALLBACK_FAILURE

/// The crypto helper finds the ngtcp2 connection through the TLS session's pointer to this reference.
let getConnection: @convention(c) (UnsafeMutablePointer<ngtcp2_crypto_conn_ref>?) -> OpaquePointer? = { reference in
    QUICConnection.from(reference?.pointee.user_data).conn
}

/// After the ClientHello (server): refuse a handshake that did not choose h3, which GnuTLS lets through when the
/// client offered no ALPN at all.
let checkALPN: @convention(c) (OpaquePointer?, UInt32, UInt32, UInt32, UnsafePointer<gnutls_datum_t>?) -> Int32 = {
    session,
    _,
    _,
    _,
    _ in
    var selected = gnutls_datum_t()
    guard gnutls_alpn_get_selected_protocol(session, &selected) == 0 else { return -1 }
    let h3: [UInt8] = [0x68, 0x33]
    return UnsafeBufferPointer(start: selected.data, count: Int(selected.size)).elementsEqual(h3) ? 0 : -1
}

/// After the ClientHello is parsed and before a certificate is chosen (server): note the client's SNI, and with
/// several certificates switch the session to the credentials whose names match it.
let selectCertificate: @convention(c) (OpaquePointer?) -> Int32 = { session in
    guard let reference = gnutls_session_get_ptr(session)?.assumingMemoryBound(to: ngtcp2_crypto_conn_ref.self)
    else { return 0 }
    let connection = QUICConnection.from(reference.pointee.user_data)
    var name = [UInt8](repeating: 0, count: 256)
    var size = name.count
    var type: UInt32 = 0
    let serverName =
        gnutls_server_name_get(session, &name, &size, &type, 0) == 0 && type == UInt32(GNUTLS_NAME_DNS.rawValue)
        ? String(decoding: name.prefix(size), as: UTF8.self) : nil
    connection.requestedServerName = serverName
    guard connection.credentials.sites.count > 1 else { return 0 }
    let chosen = connection.credentials.credentials(forServerName: serverName)
    return gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(chosen))
}

private let onKeyInstalled: @convention(c) (OpaquePointer?, ngtcp2_crypto_level, UnsafeMutableRawPointer?) -> Int32 = {
    _,
    level,
    user in
    guard level == NGTCP2_CRYPTO_LEVEL_APPLICATION else { return 0 }
    return QUICConnection.from(user).applicationKeysReady() ? 0 : failure
}

private let onHandshakeCompleted: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { _, user in
    QUICConnection.from(user).handshakeCompleted() ? 0 : failure
}

private let onStreamData:
    @convention(c) (
        OpaquePointer?, UInt32, Int64, UInt64, UnsafePointer<UInt8>?, Int, UnsafeMutableRawPointer?,
        UnsafeMutableRawPointer?
    ) -> Int32 = { _, flags, stream, _, data, length, user, _ in
        let connection = QUICConnection.from(user)
        let fin = flags & UInt32(NGTCP2_STREAM_DATA_FLAG_FIN) != 0
        guard let application = connection.application else {
            connection.holdStreamData(stream: stream, UnsafeRawBufferPointer(start: data, count: length), fin: fin)
            return 0
        }
        return application.quicStreamData(stream: stream, UnsafeRawBufferPointer(start: data, count: length), fin: fin)
            ? 0 : failure
    }

private let onStreamDataAcknowledged:
    @convention(c) (
        OpaquePointer?, Int64, UInt64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32 = { _, stream, _, length, user, _ in
        QUICConnection.from(user).application?.quicStreamDataAcknowledged(stream: stream, count: length) == false
            ? failure : 0
    }

private let onStreamClose:
    @convention(c) (
        OpaquePointer?, UInt32, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32 = { _, flags, stream, errorCode, user, _ in
        let code = flags & UInt32(NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0 ? errorCode : nil
        return QUICConnection.from(user).application?.quicStreamClosed(stream: stream, errorCode: code) == false
            ? failure : 0
    }

private let onStreamReset:
    @convention(c) (
        OpaquePointer?, Int64, UInt64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32 = { _, stream, _, errorCode, user, _ in
        QUICConnection.from(user).application?.quicStreamReset(stream: stream, errorCode: errorCode) == false
            ? failure : 0
    }

private let onStopSending:
    @convention(c) (
        OpaquePointer?, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32 = { _, stream, errorCode, user, _ in
        QUICConnection.from(user).application?.quicStopSending(stream: stream, errorCode: errorCode) == false
            ? failure : 0
    }

private let onRemoteBidirectionalStreamsExtended:
    @convention(c) (OpaquePointer?, UInt64, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        maximum,
        user in
        QUICConnection.from(user).application?.quicRemoteBidirectionalStreamsExtended(to: maximum)
        return 0
    }

private let onStreamDataLimitExtended:
    @convention(c) (
        OpaquePointer?, Int64, UInt64, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32 = { _, stream, _, user, _ in
        QUICConnection.from(user).application?.quicStreamUnblocked(stream: stream) == false ? failure : 0
    }

/// A NEW_TOKEN frame (client): kept for the next connection to the same server.
private let onNewToken: @convention(c) (OpaquePointer?, UnsafePointer<ngtcp2_vec>?, UnsafeMutableRawPointer?) -> Int32 =
    {
        _,
        token,
        user in
        if let token {
            QUICConnection.from(user).addressValidationToken = Array(
                UnsafeBufferPointer(start: token.pointee.base, count: token.pointee.len)
            )
        }
        return 0
    }

/// Random bytes for what ngtcp2 does not derive from keys (packet-number skips, padding); the system source.
private let fillRandom: @convention(c) (UnsafeMutablePointer<UInt8>?, Int, UnsafePointer<ngtcp2_rand_ctx>?) -> Void = {
    destination,
    length,
    _ in
    guard let destination else { return }
    var generator = SystemRandomNumberGenerator()
    for index in 0..<length { destination[index] = UInt8.random(in: 0...255, using: &generator) }
}

private let onNewConnectionID:
    @convention(c) (
        OpaquePointer?, UnsafeMutablePointer<ngtcp2_cid>?, UnsafeMutablePointer<UInt8>?, Int, UnsafeMutableRawPointer?
    ) -> Int32 = { _, cid, token, length, user in
        guard let cid, let token else { return failure }
        return QUICConnection.from(user).newConnectionID(cid, token: token, length: length) ? 0 : failure
    }

private let onConnectionIDRemoved:
    @convention(c) (OpaquePointer?, UnsafePointer<ngtcp2_cid>?, UnsafeMutableRawPointer?) -> Int32 = {
        _,
        cid,
        user in
        if let cid { QUICConnection.from(user).connectionIDRemoved(cid) }
        return 0
    }
