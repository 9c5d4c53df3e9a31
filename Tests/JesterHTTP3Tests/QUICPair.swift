// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterHTTP3
import NIOCore

/// The TLS fixtures shared with the TCP TLS tests (Tests/Fixtures/tls, made by its make.sh).
enum Fixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/tls")

    static func bytes(_ name: String) -> [UInt8] {
        Array(try! Data(contentsOf: directory.appendingPathComponent(name)))
    }

    static func serverCredentials() throws -> QUICTLSCredentials {
        try QUICTLSCredentials(certificateChainPEM: bytes("alpha.pem"), privateKeyPEM: bytes("alpha.key"))
    }

    static func clientCredentials() throws -> QUICTLSCredentials {
        try QUICTLSCredentials(trustedCertificatesPEM: bytes("ca.pem"))
    }
}

/// Connection IDs that start with a fixed prefix, as a worker's will (slot and generation): shows the server uses
/// the caller's factory for every ID it hands out.
struct PrefixedConnectionIDFactory: QUICConnectionIDFactory {
    let prefix: [UInt8]
    let connectionIDLength = 16

    func makeConnectionID() -> QUICConnectionID {
        QUICConnectionID(prefix + (prefix.count..<connectionIDLength).map { _ in UInt8.random(in: 0...255) })!
    }
}

/// A QUIC client and a QUIC server endpoint wired together in memory: every datagram is moved by the test, the
/// clock is a counter, and the server side routes by connection ID as a worker will.
final class QUICPair {
    let clientAddress = QUICSocketAddress(ip: "127.0.0.1", port: 50_000)!
    let serverAddress = QUICSocketAddress(ip: "127.0.0.1", port: 443)!
    let endpoint: QUICServerEndpoint
    let client: HTTP3Session
    /// The server's HTTP/3 session, once the client's first Initial was accepted.
    var server: HTTP3Session?
    /// The server's connections by every ID that names them (what the worker's table will be).
    var table: [QUICConnectionID: QUICConnection] = [:]
    var now = QUICInstant(nanoseconds: 1_000_000_000)
    var serverSettings: HTTP3Session.Settings
    var requireAddressValidation = false
    /// Every ID the server issued, in order.
    var issuedIDs: [QUICConnectionID] = []
    var clientEvents: [HTTP3Event] = []
    var serverEvents: [HTTP3Event] = []
    var clientConnectionEvents: [QUICConnectionEvent] = []
    var serverConnectionEvents: [QUICConnectionEvent] = []
    /// Datagrams the server endpoint answered without a connection (Retry, Version Negotiation, refusals).
    var statelessAnswers = 0
    /// When set, datagrams from the client are dropped instead of delivered (to test the server's timers).
    var dropClientDatagrams = false
    /// The client's address as the server sees it: a test changes it to play a NAT rebinding. Server datagrams to
    /// any other address are lost, as they would be once the old mapping is gone.
    var clientSource: QUICSocketAddress
    /// Server datagrams sent to an address that is no longer the client's.
    var lostToOldAddress = 0

    init(
        transport: QUICTransportSettings = QUICTransportSettings(),
        serverSettings: HTTP3Session.Settings = .init(),
        clientTransport: QUICTransportSettings = QUICTransportSettings(),
        connectionIDs: any QUICConnectionIDFactory = PrefixedConnectionIDFactory(prefix: [0x4a, 0x07]),
        serverName: String = "localhost",
        clientCredentials: QUICTLSCredentials? = nil,
        applicationProtocol: String = "h3",
        endpoint: QUICServerEndpoint? = nil,
        token: [UInt8] = [],
        serverCredentials: QUICTLSCredentials? = nil
    ) throws {
        // Another pair's endpoint: the same server (keys, settings) seen by a second client connection.
        self.endpoint =
            try endpoint
            ?? QUICServerEndpoint(
                credentials: try serverCredentials ?? Fixture.serverCredentials(),
                keys: .random(),
                connectionIDs: connectionIDs,
                settings: transport
            )
        self.serverSettings = serverSettings
        clientSource = clientAddress
        let connection = try QUICConnection.connect(
            from: clientAddress,
            to: serverAddress,
            serverName: serverName,
            credentials: try clientCredentials ?? Fixture.clientCredentials(),
            settings: clientTransport,
            applicationProtocol: applicationProtocol,
            token: token,
            now: now
        )
        client = try HTTP3Session(connection: connection, now: now)
    }

    /// Moves datagrams both ways until neither side has any, advancing the clock 1 ms per round trip; then runs
    /// the timers that fall due within `settle` (delayed acknowledgements), and repeats.
    func pump(rounds: Int = 200, settle: UInt64 = 30) {
        for _ in 0..<rounds {
            var moved = 0
            for datagram in client.connection.pendingDatagrams(now: now) {
                moved += 1
                if !dropClientDatagrams { deliverToServer(datagram) }
            }
            if let server {
                for datagram in server.connection.pendingDatagrams(now: now) {
                    moved += 1
                    if datagram.peer == clientSource { deliverToClient(datagram) } else { lostToOldAddress += 1 }
                }
            }
            collect()
            now = now.adding(milliseconds: 1)
            if moved == 0 {
                // Nothing to send: run the nearest timer if it is close (an ACK delay, a pacing slot).
                let deadlines = [client.connection.nextDeadline, server?.connection.nextDeadline].compactMap { $0 }
                guard let next = deadlines.min(), next <= now.adding(milliseconds: settle) else { return }
                now = max(now, next)
                client.connection.handleExpiry(now: now)
                server?.connection.handleExpiry(now: now)
                collect()
            }
        }
    }

    /// Moves the clock on and runs both sides' timers.
    func advance(milliseconds: UInt64) {
        now = now.adding(milliseconds: milliseconds)
        client.connection.handleExpiry(now: now)
        server?.connection.handleExpiry(now: now)
        collect()
    }

    /// Hands a client datagram to the server side, as arriving from `clientSource`.
    func deliverToServer(_ datagram: QUICDatagram) {
        let source = clientSource
        datagram.bytes.withUnsafeBytes { bytes in
            switch endpoint.route(datagram: bytes, peer: source) {
            case .connection(let id, let isLong):
                if let connection = table[id] {
                    connection.receive(datagram: bytes, local: serverAddress, peer: source, now: now)
                } else if isLong {
                    accept(bytes, from: source)
                } else if let reset = endpoint.statelessReset(datagram: bytes, peer: source) {
                    statelessAnswers += 1
                    deliverToClient(reset)
                }
            case .versionNegotiation(let answer):
                statelessAnswers += 1
                deliverToClient(answer)
            case .invalid:
                break
            }
        }
    }

    func deliverToClient(_ datagram: QUICDatagram) {
        client.connection.receive(datagram: datagram.bytes, local: clientAddress, peer: serverAddress, now: now)
    }

    private func accept(_ bytes: UnsafeRawBufferPointer, from peer: QUICSocketAddress) {
        switch endpoint.accept(
            datagram: bytes,
            local: serverAddress,
            peer: peer,
            requireAddressValidation: requireAddressValidation,
            now: now
        )
        {
        case .accepted(let connection):
            table[connection.originalDestinationConnectionID] = connection
            server = try? HTTP3Session(connection: connection, settings: serverSettings, now: now)
        case .retry(let answer), .refuse(let answer):
            statelessAnswers += 1
            deliverToClient(answer)
        case .ignore:
            break
        }
    }

    private func collect() {
        clientEvents += client.takeEvents()
        clientConnectionEvents += client.connection.takeEvents()
        guard let server else { return }
        serverEvents += server.takeEvents()
        for event in server.connection.takeEvents() {
            serverConnectionEvents.append(event)
            switch event {
            case .connectionIDIssued(let id):
                issuedIDs.append(id)
                table[id] = server.connection
            case .connectionIDRetired(let id):
                table[id] = nil
            default:
                break
            }
        }
    }

    // MARK: Reading events

    /// The body bytes received on `stream` so far, from `events`.
    static func body(_ events: [HTTP3Event], stream: Int64) -> [UInt8] {
        events.reduce(into: []) { bytes, event in
            if case .data(stream, let buffer) = event { bytes += Array(buffer.readableBytesView) }
        }
    }

    static func headers(_ events: [HTTP3Event], stream: Int64) -> [HTTP3Field]? {
        for case .headers(stream, let fields, _) in events { return fields }
        return nil
    }

    static func trailers(_ events: [HTTP3Event], stream: Int64) -> [HTTP3Field]? {
        for case .trailers(stream, let fields) in events { return fields }
        return nil
    }

    /// The first request stream the server saw.
    var firstServerStream: Int64? {
        for case .headers(let stream, _, _) in serverEvents { return stream }
        return nil
    }
}

extension Array where Element == HTTP3Field {
    /// The value of the first field named `name`.
    subscript(name: String) -> String? { first { $0.name == name }?.value }
}

/// A request head for https://localhost/`path`.
func requestFields(_ method: String = "GET", _ path: String = "/", extra: [HTTP3Field] = []) -> [HTTP3Field] {
    [
        HTTP3Field(":method", method), HTTP3Field(":scheme", "https"), HTTP3Field(":authority", "localhost"),
        HTTP3Field(":path", path),
    ] + extra
}

/// `count` bytes of a repeating pattern, so a reordering or a lost piece shows.
func pattern(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) } }
