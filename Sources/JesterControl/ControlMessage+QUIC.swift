// SPDX-License-Identifier: Apache-2.0

// The control protocol's HTTP/3 (QUIC) parts: what a worker reports of its UDP side, and the forwarding inboxes
// the master lists for workers the kernel does not steer datagrams to (see `ControlMessage.quicPeers`).

/// One worker's QUIC counters since it started, over all its HTTP/3 listeners (`jesterctl status --json`).
public struct QUICStats: Codable, Sendable, Equatable {
    /// Datagrams that reached the worker's UDP sockets.
    public var datagrams: Int
    /// Short-header datagrams for a connection this worker does not know: another worker's, delivered here
    /// (steered by connection ID, this stays 0 while their owner lives), or a connection that is gone.
    public var unknownConnection: Int
    /// Of those, datagrams whose connection ID names another worker (slot or generation): delivered to the wrong
    /// worker while their owner lives (never, when the master steers by connection ID), or after it exited.
    public var otherWorker: Int
    /// Connections this worker accepted (their handshakes begun).
    public var accepted: Int
    /// Retry packets sent (address validation under load, or `http3_retry = "always"`).
    public var retries: Int
    /// Without steering: datagrams this worker passed to the worker that owns them, datagrams other workers passed
    /// to it, and forwarded messages refused (not from this instance's workers).
    public var forwarded: Int = 0
    public var forwardedIn: Int = 0
    public var forwardingRefused: Int = 0
    /// Handshakes that resumed a session from a ticket, and of those, the ones whose 0-RTT data was accepted
    /// (`http3_early_data`). Optional only so a report from a worker older than these counters still decodes.
    public var resumed: Int?
    public var earlyData: Int?

    public init(datagrams: Int = 0, unknownConnection: Int = 0, otherWorker: Int = 0, accepted: Int = 0, retries: Int = 0) {
        self.datagrams = datagrams
        self.unknownConnection = unknownConnection
        self.otherWorker = otherWorker
        self.accepted = accepted
        self.retries = retries
    }
}

/// A worker's forwarding inbox for one HTTP/3 address: the loopback UDP port it reads forwarded datagrams on.
public struct QUICInbox: Codable, Sendable, Equatable {
    /// The listener's address as configured ("host:port"): one UDP address, one set of peers.
    public var address: String
    public var port: Int

    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }
}

/// One live worker's forwarding inbox, as the master tells every worker.
public struct QUICPeer: Codable, Sendable, Equatable {
    public var address: String
    public var slot: Int
    public var generation: Int
    public var port: Int
    /// Whether the worker belongs to the serving generation (new connections are its to accept).
    public var serving: Bool

    public init(address: String, slot: Int, generation: Int, port: Int, serving: Bool) {
        self.address = address
        self.slot = slot
        self.generation = generation
        self.port = port
        self.serving = serving
    }
}
