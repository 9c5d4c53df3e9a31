// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

#if canImport(Glibc)
import Glibc
#endif

/// Remembers the early ClientHellos a listener took 0-RTT data from, so that a copy replayed within the
/// anti-replay window gets no early data accepted (RFC 8446 §8). Workers answer each other's clients' replays
/// (an attacker can send a copy from another address, which may land on any worker), so Jester's register is
/// the instance-wide shared table (`SharedReplayRegister` in JesterProxy); `ProcessReplayRegister` is the
/// fallback when that table could not be made.
public protocol QUICReplayRegister: AnyObject {
    /// Records the ClientHello whose PSK binder is `binder` for `window` nanoseconds from `now`; false when it was
    /// recorded before and that record has not expired (a replay).
    func recordFirstUse(of binder: UnsafeRawBufferPointer, now: Int64, window: Int64) -> Bool
}

/// A replay register of one process (tests, and the fallback without the shared table): a replay that reaches
/// another worker is not recognised, which is why only safe requests are forwarded early anyway.
public final class ProcessReplayRegister: QUICReplayRegister {
    private var seen: [[UInt8]: Int64] = [:]

    public init() {}

    public func recordFirstUse(of binder: UnsafeRawBufferPointer, now: Int64, window: Int64) -> Bool {
        if seen.count > 4096 { seen = seen.filter { $0.value > now } }
        let key = Array(binder)
        if let expiry = seen[key], expiry > now { return false }
        seen[key] = now + window
        return true
    }
}

/// Session resumption and 0-RTT for a QUIC listener's server connections: GnuTLS session tickets under a key
/// every worker shares, and, when early data is enabled, GnuTLS's anti-replay check with `QUICReplayRegister` as
/// its store.
///
/// The ticket key is derived from three things: the master's `QUICKeys` (instance-wide and kept across reloads
/// and upgrades), the newest of the master's rotating TLS ticket keys (`rotate(secret:)`: a key that leaks
/// exposes tickets of one rotation period, not all of them; GnuTLS decrypts with one key, so a ticket resumes
/// until the next rotation), and the listener's `context`: its client-certificate policy (a resumed handshake
/// asks for no certificate, so a ticket made where none was required must not resume where one is) and the
/// transport parameters and HTTP/3 SETTINGS a 0-RTT client remembers from its ticket (RFC 9000 §7.4.1, RFC 9114
/// §7.2.4.2: they must not shrink while such tickets live, so a change makes tickets that do not resume).
///
/// Early data is the application's concern past this point: ngtcp2 installs the 0-RTT keys itself when GnuTLS
/// accepts early data, and the requests that arrive before the handshake completes are told apart by the
/// exchange (only safe methods go upstream early, marked `Early-Data: 1`, RFC 8470).
///
/// One per listener and process; used on the worker's thread.
public final class QUICSessionResumption: @unchecked Sendable {
    // @unchecked: the anti-replay context and the register are used only on the worker's event-loop thread.

    /// GnuTLS's ticket master key: exactly 64 bytes. GnuTLS never uses it directly: it derives the key of each
    /// period (three ticket lifetimes) from it and the time, so processes holding the same bytes make and
    /// accept the same tickets, and the previous period's still decrypt. New sessions take the current one.
    private(set) var ticketKey: [UInt8]
    private let keys: QUICKeys
    private let context: [UInt8]
    /// How long a ticket resumes (GnuTLS's session expiration).
    let ticketLifetimeSeconds: Int32
    /// Whether 0-RTT data is accepted (`http3_early_data`).
    public let acceptsEarlyData: Bool
    /// GnuTLS's anti-replay context (nil without early data).
    let antiReplay: OpaquePointer?
    fileprivate let register: (any QUICReplayRegister)?

    /// The anti-replay window. GnuTLS refuses early data for a ticket issued before its current window began (a
    /// window restarts at the first early ClientHello more than this after the last restart, per process), and
    /// for a client whose idea of the ticket's age is off by more than this; every early ClientHello is
    /// remembered for twice this long. 10 s, GnuTLS's own default: 0-RTT is for clients that come back soon;
    /// the others resume in one round trip.
    public static let antiReplayWindowMilliseconds: UInt32 = 10_000

    /// Resumption with tickets under the key derived from `keys`, `context` (the listener's policy and limits)
    /// and `rotatingSecret` (the newest TLS ticket key; nil without one); with `replayRegister`, 0-RTT too.
    public init(
        keys: QUICKeys, context: [UInt8], rotatingSecret: [UInt8]?, ticketLifetimeSeconds: Int32,
        replayRegister: (any QUICReplayRegister)?
    ) throws(QUICError) {
        self.keys = keys
        self.context = context
        ticketKey = Self.ticketKey(from: keys, context: context, rotatingSecret: rotatingSecret ?? [])
        self.ticketLifetimeSeconds = max(60, ticketLifetimeSeconds)
        register = replayRegister
        acceptsEarlyData = replayRegister != nil
        guard replayRegister != nil else {
            antiReplay = nil
            return
        }
        var context: OpaquePointer?
        guard gnutls_anti_replay_init(&context) == 0, let context else {
            antiReplay = nil
            throw QUICError(.tlsConfiguration, "gnutls: cannot create the 0-RTT anti-replay context")
        }
        antiReplay = context
        gnutls_anti_replay_set_window(context, Self.antiReplayWindowMilliseconds)
        gnutls_anti_replay_set_add_function(context, recordEarlyClientHello)
        gnutls_anti_replay_set_ptr(context, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        if let antiReplay { gnutls_anti_replay_deinit(antiReplay) }
    }

    /// The master rotated its TLS ticket keys: sessions from now on get tickets under a key derived from the
    /// newest (tickets under the previous one no longer resume: a full handshake, then a new ticket).
    public func rotate(secret: [UInt8]) {
        ticketKey = Self.ticketKey(from: keys, context: context, rotatingSecret: secret)
    }

    /// HMAC-SHA-512 under the token secret of a label, the context and the rotating secret (each after its
    /// length): 64 bytes, the same in every process holding the same three, unrelated to the secret's other uses.
    static func ticketKey(from keys: QUICKeys, context: [UInt8], rotatingSecret: [UInt8]) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: 64)
        var message = Array("jester QUIC session ticket key".utf8)
        for part in [context, rotatingSecret] {
            message += withUnsafeBytes(of: UInt32(part.count).bigEndian, Array.init) + part
        }
        let status = keys.tokenSecret.withUnsafeBufferPointer { secret in
            gnutls_hmac_fast(GNUTLS_MAC_SHA512, secret.baseAddress, secret.count, message, message.count, &key)
        }
        precondition(status == 0, "GnuTLS's HMAC-SHA-512 failed")
        return key
    }

    /// Sets up a new server session: tickets under the shared key, and early data with anti-replay.
    func configure(_ session: OpaquePointer) -> Int32 {
        var status = ticketKey.withUnsafeBufferPointer { bytes in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: bytes.baseAddress), size: UInt32(bytes.count))
            // (GnuTLS copies the key.)
            return gnutls_session_ticket_enable_server(session, &datum)
        }
        guard status == 0 else { return status }
        gnutls_db_set_cache_expiration(session, ticketLifetimeSeconds)
        if let antiReplay {
            gnutls_anti_replay_enable(session, antiReplay)
            // QUIC's tickets announce 0xffffffff or nothing (RFC 9001 §4.6.1); the limit is flow control's.
            status = gnutls_record_set_max_early_data_size(session, 0xffff_ffff)
        }
        return status
    }

    /// GnuTLS asks whether an early ClientHello is new: its key is the process's window start (12 bytes), then
    /// the PSK binder, which is what identifies the ClientHello everywhere. The record outlives the window
    /// twice over: GnuTLS judges a ticket's age on the wall clock, which may be slewed against this monotonic one.
    func isFirstUse(key: UnsafeRawBufferPointer) -> Bool {
        guard let register, key.count > 12 else { return false }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanoseconds = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        return register.recordFirstUse(
            of: UnsafeRawBufferPointer(rebasing: key[12...]), now: nanoseconds,
            window: 2 * Int64(Self.antiReplayWindowMilliseconds) * 1_000_000)
    }
}

/// GnuTLS's anti-replay store callback: 0 to accept the early data, a negative code for a replay.
private let recordEarlyClientHello: @convention(c) (
    UnsafeMutableRawPointer?, time_t, UnsafePointer<gnutls_datum_t>?, UnsafePointer<gnutls_datum_t>?
) -> Int32 = { pointer, _, key, _ in
    guard let pointer, let key, let data = key.pointee.data else { return GNUTLS_E_DB_ERROR }
    let resumption = Unmanaged<QUICSessionResumption>.fromOpaque(pointer).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: data, count: Int(key.pointee.size))
    return resumption.isFirstUse(key: bytes) ? 0 : GNUTLS_E_DB_ENTRY_EXISTS
}
