// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterTLS
import NIOCore
import NIOEmbedded
import Testing

/// The OpenSSL wrapper, client and server connected in memory: no sockets, every byte moved by the test.

enum Fixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/tls")

    static func bytes(_ name: String) -> [UInt8] {
        Array(try! Data(contentsOf: directory.appendingPathComponent(name)))
    }

    static func certificate(_ name: String, names: [String] = []) -> TLSServerConfiguration.Certificate {
        .init(chainPEM: bytes("\(name).pem"), keyPEM: bytes("\(name).key"), names: names, origin: "\(name).pem")
    }

    static func key(_ seed: UInt8) -> TLSTicketKey {
        TLSTicketKey(material: (0..<80).map { UInt8(truncatingIfNeeded: Int($0) &* 7 &+ Int(seed)) })!
    }
}

/// Moves ciphertext between the two until neither has anything to say, then tries both handshakes.
@discardableResult
private func pump(_ client: TLSConnection, _ server: TLSConnection, rounds: Int = 10) -> (TLSConnection.Progress, TLSConnection.Progress) {
    var clientState = client.handshake()
    var serverState = server.handshake()
    for _ in 0..<rounds {
        let moved = move(from: client, to: server) + move(from: server, to: client)
        // A failure is kept as it was first reported (with OpenSSL's reasons).
        if case .failed = clientState {} else { clientState = client.handshake() }
        if case .failed = serverState {} else { serverState = server.handshake() }
        if moved == 0 { break }
    }
    _ = move(from: server, to: client)  // tickets sent after the server's handshake
    return (clientState, serverState)
}

private func move(from source: TLSConnection, to destination: TLSConnection) -> Int {
    var bytes = [UInt8](repeating: 0, count: source.outputCount)
    let count = bytes.withUnsafeMutableBytes { source.takeOutput(into: $0) }
    bytes.withUnsafeBytes { destination.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    return count
}

private func readAll(_ connection: TLSConnection) -> String {
    var text: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while case .bytes(let count) = chunk.withUnsafeMutableBytes({ connection.read(into: $0) }) {
        text += chunk[0..<count]
    }
    return String(decoding: text, as: UTF8.self)
}

private func serverContext(
    _ certificates: [TLSServerConfiguration.Certificate] = [Fixture.certificate("alpha")],
    configure: (inout TLSServerConfiguration) -> Void = { _ in }
) throws -> TLSServerContext {
    var configuration = TLSServerConfiguration(certificates: certificates)
    configure(&configuration)
    return try TLSServerContext(configuration)
}

@Test func handshakesAndCarriesDataBothWays() throws {
    let context = try serverContext()
    let server = context.makeConnection()
    let client = try TLSConnection(
        clientServerName: "alpha.test", applicationProtocols: ["h2", "http/1.1"], caPEM: Fixture.bytes("ca.pem"))
    let (clientState, serverState) = pump(client, server)
    #expect(clientState == .complete)
    #expect(serverState == .complete)
    let facts = server.facts
    #expect(facts.version == "TLSv1.3")
    #expect(facts.serverName == "alpha.test")
    #expect(facts.applicationProtocol == "http/1.1")  // h2 is not offered by the server yet
    #expect(facts.resumed == false)
    #expect(facts.clientCertificateSubject == nil)

    #expect(Array("GET / HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { client.write($0) } == nil)
    _ = move(from: client, to: server)
    #expect(readAll(server) == "GET / HTTP/1.1\r\n\r\n")
    #expect(Array("HTTP/1.1 200 OK\r\n\r\n".utf8).withUnsafeBytes { server.write($0) } == nil)
    _ = move(from: server, to: client)
    #expect(readAll(client) == "HTTP/1.1 200 OK\r\n\r\n")

    server.shutdown()
    _ = move(from: server, to: client)
    var chunk = [UInt8](repeating: 0, count: 64)
    #expect(chunk.withUnsafeMutableBytes { client.read(into: $0) } == .closed)
}

@Test func serverNameSelectsTheCertificateExactThenWildcardElseDefault() throws {
    let context = try serverContext([Fixture.certificate("alpha"), Fixture.certificate("wildcard")])
    #expect(context.certificateNames == [["alpha.test", "localhost"], ["*.beta.test"]])
    for (name, expected) in [
        ("alpha.test", "alpha.test"), ("API.BETA.TEST", "*.beta.test"), ("beta.test", "alpha.test"),
        ("a.b.beta.test", "alpha.test"), ("unknown.test", "alpha.test"),
    ] {
        let server = context.makeConnection()
        let client = try TLSConnection(clientServerName: name)
        #expect(pump(client, server).1 == .complete)
        #expect(client.peerCertificateNames.first == expected, "SNI \(name)")
    }
    // No SNI at all: the default.
    let server = context.makeConnection()
    let client = try TLSConnection(clientServerName: nil)
    #expect(pump(client, server).1 == .complete)
    #expect(client.peerCertificateNames.first == "alpha.test")
}

@Test func explicitNamesOverrideTheCertificates() throws {
    let context = try serverContext([Fixture.certificate("alpha"), Fixture.certificate("wildcard", names: ["other.test"])])
    let server = context.makeConnection()
    let client = try TLSConnection(clientServerName: "other.test")
    #expect(pump(client, server).1 == .complete)
    #expect(client.peerCertificateNames.first == "*.beta.test")
}

/// Two contexts stand for two workers (or two generations): with the same ticket keys a session made on one
/// resumes on the other; a rotated key still resumes; unknown keys fall back to a full handshake.
@Test func ticketsResumeAcrossContextsSharingKeys() throws {
    let first = try serverContext()
    let second = try serverContext()
    first.updateTicketKeys([Fixture.key(1)])
    second.updateTicketKeys([Fixture.key(1)])

    func connect(_ context: TLSServerContext, session: TLSSession?) throws -> (TLSConnection, TLSConnection) {
        let server = context.makeConnection()
        let client = try TLSConnection(clientServerName: "alpha.test", session: session)
        #expect(pump(client, server).1 == .complete)
        _ = readAll(client)  // processes the NewSessionTicket messages
        return (client, server)
    }
    // (A TLS 1.3 ticket is used once, as RFC 8446 §C.4 advises clients; each connection's new one is the next.)
    let (client, _) = try connect(first, session: nil)
    let (resumedClient, resumedServer) = try connect(second, session: try #require(client.session))
    #expect(resumedServer.facts.resumed)

    // Rotation: the old key decrypts (and the ticket is renewed under the new one) while the new one encrypts.
    second.updateTicketKeys([Fixture.key(2), Fixture.key(1)])
    let (renewedClient, renewedServer) = try connect(second, session: try #require(resumedClient.session))
    #expect(renewedServer.facts.resumed)
    // The renewed ticket is under key 2: a worker that has not been given it yet cannot resume it...
    let (_, behind) = try connect(first, session: try #require(renewedClient.session))
    #expect(behind.facts.resumed == false)
    // ...and once it has, it can.
    first.updateTicketKeys([Fixture.key(2), Fixture.key(1)])
    let (_, caughtUp) = try connect(second, session: try #require(renewedClient.session))
    let fresh = try connect(second, session: nil).0
    let (_, shared) = try connect(first, session: try #require(fresh.session))
    #expect(caughtUp.facts.resumed)
    #expect(shared.facts.resumed)

    // A context that never had the keys cannot read the ticket: full handshake, still a working connection.
    let stranger = try serverContext()
    stranger.updateTicketKeys([Fixture.key(3)])
    #expect(try connect(stranger, session: try #require(client.session)).1.facts.resumed == false)
}

@Test func clientCertificatesAreVerifiedWhenRequired() throws {
    let context = try serverContext {
        $0.clientVerification = .required
        $0.clientCAPEM = Fixture.bytes("ca.pem")
    }
    let anonymous = try TLSConnection(clientServerName: "alpha.test")
    let refused = context.makeConnection()
    if case .failed(let error) = pump(anonymous, refused).1 {
        #expect(error.description.contains("certificate"))
    } else {
        Issue.record("a client without a certificate completed the handshake")
    }

    let alice = try TLSConnection(clientServerName: "alpha.test", certificate: Fixture.certificate("client"))
    let server = context.makeConnection()
    #expect(pump(alice, server).1 == .complete)
    #expect(server.facts.clientCertificateSubject == "O=Jester Tests,CN=alice")
}

@Test func optionalClientCertificatesLetAnonymousClientsIn() throws {
    let context = try serverContext {
        $0.clientVerification = .optional
        $0.clientCAPEM = Fixture.bytes("ca.pem")
    }
    let server = context.makeConnection()
    #expect(pump(try TLSConnection(clientServerName: nil), server).1 == .complete)
    #expect(server.facts.clientCertificateSubject == nil)
}

@Test func badMaterialIsRejectedWithTheReason() throws {
    func failure(_ certificate: TLSServerConfiguration.Certificate) -> String {
        do {
            _ = try TLSServerContext(TLSServerConfiguration(certificates: [certificate]))
            return "accepted"
        } catch {
            return error.description
        }
    }
    var mismatched = Fixture.certificate("alpha")
    mismatched.keyPEM = Fixture.bytes("stray.key")
    #expect(failure(mismatched).contains("the private key does not match the certificate"))

    var noCertificate = Fixture.certificate("alpha")
    noCertificate.chainPEM = Array("not a certificate".utf8)
    #expect(failure(noCertificate).contains("holds no PEM certificate"))

    var noKey = Fixture.certificate("alpha")
    noKey.keyPEM = Fixture.bytes("alpha.pem")
    #expect(failure(noKey).contains("no PEM private key"))

    var encrypted = Fixture.certificate("alpha")
    encrypted.keyPEM = Array("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".utf8)
    #expect(failure(encrypted).contains("encrypted"))

    #expect(throws: TLSError.self) {
        _ = try serverContext { $0.ciphers = "NO-SUCH-CIPHER" }
    }
}

@Test func minimumVersionThirteenRefusesTwelve() throws {
    let context = try serverContext { $0.minimumVersion = .tls13 }
    let server = context.makeConnection()
    let client = try TLSConnection(clientServerName: nil)
    #expect(pump(client, server).1 == .complete)
    #expect(server.facts.version == "TLSv1.3")
}

// MARK: The channel handler

@Test func handlerDecryptsForTheNextHandlerAndSendsCloseNotify() throws {
    let context = try serverContext()
    let channel = EmbeddedChannel(handler: TLSHandler(context: context))
    let recorder = Recorder()
    try channel.pipeline.syncOperations.addHandler(recorder)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    let client = try TLSConnection(clientServerName: "alpha.test")

    // Drive the handshake through the channel.
    for _ in 0..<5 {
        _ = client.handshake()
        try send(client, to: channel)
        try receive(from: channel, into: client)
    }
    #expect(client.handshake() == .complete)
    #expect(recorder.established?.serverName == "alpha.test")

    #expect(Array("ping".utf8).withUnsafeBytes { client.write($0) } == nil)
    try send(client, to: channel)
    #expect(recorder.received == "ping")

    try channel.writeAndFlush(ByteBuffer(string: "pong")).wait()
    try receive(from: channel, into: client)
    #expect(readAll(client) == "pong")

    _ = try? channel.close().wait()
    try receive(from: channel, into: client)
    var chunk = [UInt8](repeating: 0, count: 64)
    #expect(chunk.withUnsafeMutableBytes { client.read(into: $0) } == .closed)
}

@Test func handlerReportsAFailedHandshakeAndCloses() throws {
    let channel = EmbeddedChannel(handler: TLSHandler(context: try serverContext()))
    let recorder = Recorder()
    try channel.pipeline.syncOperations.addHandler(recorder)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    #expect(recorder.errors.first is TLSError)
    #expect(!channel.isActive)
}

private func send(_ client: TLSConnection, to channel: EmbeddedChannel) throws {
    var bytes = [UInt8](repeating: 0, count: client.outputCount)
    guard !bytes.isEmpty else { return }
    _ = bytes.withUnsafeMutableBytes { client.takeOutput(into: $0) }
    try channel.writeInbound(ByteBuffer(bytes: bytes))
}

private func receive(from channel: EmbeddedChannel, into client: TLSConnection) throws {
    while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
        buffer.withUnsafeReadableBytes { client.feed($0) }
    }
}

private final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received = ""
    var established: TLSSessionFacts?
    var errors: [any Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += String(buffer: unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSEstablished { established = event.facts }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }
}

/// A client connection whose connect fails is torn down without ever being active: the handshake's waiter must
/// still hear of it (a pool waits on it through a promise, which must not be dropped unfulfilled).
@Test func aClientHandlerRemovedBeforeItsHandshakeReportsTheFailure() throws {
    var outcomes: [Result<TLSSessionFacts, TLSError>] = []
    let handler = TLSHandler(client: try TLSConnection(clientServerName: "alpha.test")) { outcomes.append($0) }
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(handler)
    // Removed without the channel ever going active or inactive, as NIO tears down a failed connect's pipeline.
    try channel.pipeline.syncOperations.removeHandler(handler).wait()
    #expect(outcomes.count == 1)
    if case .success = outcomes.first { Issue.record("a handshake that never ran succeeded") }
}
