// SPDX-License-Identifier: Apache-2.0

/// One field of an access-log line (`log.access_log_fields`); the raw value is the line's JSON key.
///
/// An enum, not free strings, so a misspelt field is a configuration error with a suggestion instead of a
/// silently missing column, and the writer can switch over every field exhaustively.
public enum AccessLogField: String, CaseIterable, Codable, Sendable {
    case time
    case type
    case requestID = "request_id"
    /// The W3C trace id (with `[tracing]`): the line's request in the tracing backend.
    case traceID = "trace_id"
    case client
    case `protocol`
    case tlsVersion = "tls_version"
    case tlsCipher = "tls_cipher"
    case tlsServerName = "tls_server_name"
    case tlsClientSubject = "tls_client_subject"
    /// true when the request arrived in TLS early data (HTTP/3 0-RTT), before the handshake completed; absent
    /// otherwise.
    case tlsEarlyData = "tls_early_data"
    case method
    case target
    case host
    case route
    case upstream
    case upstreamTarget = "upstream_target"
    case upstreamStatus = "upstream_status"
    case upstreamConnectMs = "upstream_connect_ms"
    case upstreamFirstByteMs = "upstream_first_byte_ms"
    case upstreamDurationMs = "upstream_duration_ms"
    case user
    case userAgent = "user_agent"
    case referer
    case status
    case bytesIn = "bytes_in"
    case bytesOut = "bytes_out"
    case durationMs = "duration_ms"
    case error
}
