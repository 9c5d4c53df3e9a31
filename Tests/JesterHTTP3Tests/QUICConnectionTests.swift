// SPDX-License-Identifier: Apache-2.0
import JesterHTTP3
import NIOCore
import Testing

/// The QUIC layer's decisions: address validation with Retry, version negotiation, stateless reset, timers,
/// closing and draining, GOAWAY, and TLS failures.

@Test func addressValidationSendsARetryAndTheTokenIsAccepted() throws {
    let pair = try QUICPair()
    pair.requireAddressValidation = true
    pair.pump()
    #expect(pair.statelessAnswers == 1)  // the Retry
    #expect(pair.client.connection.state == .established)
    #expect(pair.server?.connection.state == .established)
}

@Test func aRetryTokenMadeWithOtherKeysIsRefused() throws {
    let pair = try QUICPair()
    pair.requireAddressValidation = true
    // The pair's endpoint answers the first Initial with a Retry; the client sends its Initial again, with the token.
    pair.deliverToServer(try #require(pair.client.connection.pendingDatagrams(now: pair.now).first))
    #expect(pair.statelessAnswers == 1)
    let retried = try #require(pair.client.connection.pendingDatagrams(now: pair.now).first)
    // An endpoint with other keys (another deployment, or keys not shared) cannot read it: INVALID_TOKEN.
    let other = QUICServerEndpoint(
        credentials: try Fixture.serverCredentials(),
        keys: .random(),
        connectionIDs: RandomConnectionIDFactory()
    )
    let decision = retried.bytes.withUnsafeBytes {
        other.accept(datagram: $0, local: pair.serverAddress, peer: pair.clientAddress, now: pair.now)
    }
    guard case .refuse = decision else {
        Issue.record("expected a refusal, got \(decision)")
        return
    }
    // The same token from another address is refused too (it is bound to the client's address).
    let elsewhere = QUICSocketAddress(ip: "127.0.0.2", port: 50_000)!
    let moved = retried.bytes.withUnsafeBytes {
        pair.endpoint.accept(datagram: $0, local: pair.serverAddress, peer: elsewhere, now: pair.now)
    }
    guard case .refuse = moved else {
        Issue.record("expected a refusal, got \(moved)")
        return
    }
}

@Test func anUnknownVersionIsAnsweredWithVersionNegotiation() throws {
    let pair = try QUICPair()
    // A long header with version 0x1a2a3a4a, padded to an Initial's 1200 bytes.
    var packet: [UInt8] = [0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8] + pattern(8) + [4, 1, 2, 3, 4]
    packet += [UInt8](repeating: 0, count: 1200 - packet.count)
    let route = packet.withUnsafeBytes { pair.endpoint.route(datagram: $0, peer: pair.clientAddress) }
    guard case .versionNegotiation(let answer) = route else {
        Issue.record("expected version negotiation, got \(route)")
        return
    }
    // Version 0 marks Version Negotiation; the IDs are swapped; version 1 is offered.
    #expect(Array(answer.bytes[1..<5]) == [0, 0, 0, 0])
    #expect(answer.bytes[5] == 4)
    #expect(Array(answer.bytes[6..<10]) == [1, 2, 3, 4])
    #expect(Array(answer.bytes.suffix(4)) == [0, 0, 0, 1])
    // A short datagram with an unknown version could not be an Initial: not answered (RFC 9000 §6.1).
    let short = Array(packet.prefix(100))
    #expect(short.withUnsafeBytes { pair.endpoint.route(datagram: $0, peer: pair.clientAddress) } == .invalid)
}

@Test func aPacketForAForgottenConnectionGetsAStatelessResetTheClientHonours() throws {
    let pair = try QUICPair()
    pair.pump()
    // The server loses the connection (a worker restarted): its IDs no longer route.
    pair.table = [:]
    let stream = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    _ = stream
    pair.pump()
    #expect(pair.statelessAnswers >= 1)
    #expect(pair.client.connection.state == .draining || pair.client.connection.state == .closed)
}

@Test func anIdleConnectionCloses() throws {
    var transport = QUICTransportSettings()
    transport.idleTimeoutMilliseconds = 5_000
    let pair = try QUICPair(transport: transport, clientTransport: transport)
    pair.pump()
    #expect(pair.server?.connection.state == .established)
    for _ in 0..<10 { pair.advance(milliseconds: 1_000) }
    #expect(pair.server?.connection.state == .closed)
    #expect(pair.client.connection.state == .closed)
    #expect(pair.serverConnectionEvents.last == .closed)
    #expect(pair.server?.connection.nextDeadline == nil)
}

@Test func aHandshakeThatNeverFinishesTimesOut() throws {
    var transport = QUICTransportSettings()
    transport.handshakeTimeoutMilliseconds = 2_000
    let pair = try QUICPair(transport: transport)
    // The server answers the first Initial, then hears nothing more from the client.
    pair.deliverToServer(try #require(pair.client.connection.pendingDatagrams(now: pair.now).first))
    let server = try #require(pair.server)
    #expect(server.connection.state == .handshaking)
    pair.dropClientDatagrams = true
    for _ in 0..<40 {
        _ = server.connection.pendingDatagrams(now: pair.now)
        pair.advance(milliseconds: 100)
    }
    #expect(server.connection.state == .closed)
}

@Test func anApplicationCloseReachesThePeerAndBothSidesFinish() throws {
    let pair = try QUICPair()
    pair.pump()
    let server = try #require(pair.server)
    server.connection.close(applicationError: HTTP3ErrorCode.noError, reason: "bye", now: pair.now)
    #expect(server.connection.state == .closing)
    pair.pump()
    #expect(pair.client.connection.state == .draining)
    #expect(
        pair.client.connection.peerCloseError == QUICCloseError(isApplicationError: true, code: 0x100, reason: "bye")
    )
    #expect(
        pair.clientConnectionEvents.contains(
            .peerClosed(QUICCloseError(isApplicationError: true, code: 0x100, reason: "bye"))
        )
    )
    // Both keep their state for three PTOs, then are gone.
    let deadline = try #require(server.connection.nextDeadline)
    #expect(deadline > pair.now)
    pair.advance(milliseconds: 5_000)
    #expect(server.connection.state == .closed)
    #expect(pair.client.connection.state == .closed)
}

@Test func goAwayIsAnnouncedToTheClient() throws {
    let pair = try QUICPair()
    pair.pump()
    let stream = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    pair.pump()
    pair.server!.announceShutdown()
    pair.pump()
    #expect(pair.clientEvents.contains { if case .goAway = $0 { true } else { false } })
    pair.server!.goAway()
    pair.pump()
    // The request in flight still completes.
    try pair.server!.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: false)
    pair.pump()
    #expect(QUICPair.headers(pair.clientEvents, stream: stream)?[":status"] == "200")
    let goAways = pair.clientEvents.compactMap { if case .goAway(let id) = $0 { id } else { nil } }
    #expect(goAways.last == stream + 4)
}

@Test func aCertificateThatDoesNotNameTheServerFailsTheHandshake() throws {
    let pair = try QUICPair(serverName: "wrong.example")
    pair.pump()
    #expect(pair.client.connection.state != .established)
    #expect(pair.server?.connection.state != .established)
}

@Test func badCredentialsAreRefusedWithTheirCause() throws {
    #expect(throws: QUICError.self) {
        try QUICTLSCredentials(
            certificateChainPEM: Array("not a certificate".utf8),
            privateKeyPEM: Fixture.bytes("alpha.key")
        )
    }
    #expect(throws: QUICError.self) {
        try QUICTLSCredentials(trustedCertificatesPEM: Array("nothing".utf8))
    }
    #expect(throws: QUICError.self) { try QUICTLSCredentials(certificates: []) }
    // The second certificate's key is another one's: its number is in the message, GnuTLS's reason in the cause.
    let error = try #require(throws: QUICError.self) {
        try QUICTLSCredentials(certificates: [
            (Fixture.bytes("alpha.pem"), Fixture.bytes("alpha.key")),
            (Fixture.bytes("wildcard.pem"), Fixture.bytes("alpha.key")),
        ])
    }
    #expect(error.code == .tlsConfiguration)
    #expect(error.message.contains("certificate 2"))
    #expect(error.cause != nil)
}

@Test func socketAddressesRoundTripTheirText() throws {
    #expect(QUICSocketAddress(ip: "127.0.0.1", port: 443)?.description == "127.0.0.1:443")
    #expect(QUICSocketAddress(ip: "::1", port: 8443)?.description == "[::1]:8443")
    #expect(QUICSocketAddress(ip: "not an address", port: 1) == nil)
    let v4 = try #require(QUICSocketAddress(ip: "10.1.2.3", port: 9))
    #expect(v4.bytes.withUnsafeBytes { QUICSocketAddress(sockaddrBytes: $0) } == v4)
}

@Test func aClientWhoseAddressChangesKeepsItsConnection() throws {
    let pair = try QUICPair()
    pair.pump()
    let server = try #require(pair.server)
    #expect(server.connection.peer == pair.clientAddress)
    // A NAT gives the client a new port mid-connection, unknown to the client: its packets still name the
    // connection by ID, and the server validates the new path and answers there (RFC 9000 §9.3).
    let rebound = QUICSocketAddress(ip: "127.0.0.1", port: 50_001)!
    pair.clientSource = rebound
    let stream = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    pair.pump()
    #expect(QUICPair.headers(pair.serverEvents, stream: stream) != nil)
    try server.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: false)
    pair.pump()
    #expect(QUICPair.headers(pair.clientEvents, stream: stream)?[":status"] == "200")
    #expect(server.connection.peer == rebound)
    #expect(pair.client.connection.state == .established)
}

@Test func aClientThatDoesNotOfferH3IsRefusedInTheHandshake() throws {
    let pair = try QUICPair(applicationProtocol: "h3-29")
    pair.pump()
    #expect(pair.client.connection.state != .established)
    // The endpoint kept the connection only to send its CONNECTION_CLOSE: a TLS alert as a CRYPTO_ERROR.
    let server = try #require(pair.server)
    #expect(server.connection.state != .established)
    let refusal = try #require(server.connection.localCloseError)
    #expect(!refusal.isApplicationError)
    #expect(refusal.code & 0xff00 == 0x100)
    #expect(pair.client.connection.peerCloseError?.code == refusal.code)
}

@Test func aNewTokenLetsTheNextConnectionFromTheSameAddressSkipTheRetry() throws {
    let first = try QUICPair()
    first.pump()
    let token = try #require(first.client.connection.addressValidationToken)
    // The same server, the same client address, validation required: the token stands in for a Retry.
    let second = try QUICPair(endpoint: first.endpoint, token: token)
    second.requireAddressValidation = true
    second.pump()
    #expect(second.statelessAnswers == 0)
    #expect(second.server?.connection.state == .established)
    // From another address the token proves nothing: a Retry first, then the connection.
    let moved = try QUICPair(endpoint: first.endpoint, token: token)
    moved.clientSource = QUICSocketAddress(ip: "127.0.0.2", port: 50_000)!
    moved.requireAddressValidation = true
    moved.pump()
    #expect(moved.statelessAnswers == 1)
    #expect(moved.server?.connection.state == .established)
}

@Test func anExpiredNewTokenMeansARetry() throws {
    var transport = QUICTransportSettings()
    transport.newTokenLifetimeMilliseconds = 1_000
    let first = try QUICPair(transport: transport)
    first.pump()
    let token = try #require(first.client.connection.addressValidationToken)
    let later = try QUICPair(endpoint: first.endpoint, token: token)
    later.now = first.now.adding(milliseconds: 5_000)
    later.requireAddressValidation = true
    later.pump()
    #expect(later.statelessAnswers == 1)
    #expect(later.server?.connection.state == .established)
}

@Test(arguments: ["localhost", "alpha.test", "www.beta.test"])
func theCertificateFollowsTheClientsServerName(serverName: String) throws {
    // (www.beta.test needs the wildcard certificate, the second: GnuTLS alone matches exact names only.)
    // Two certificates, as a TLS listener with two sites has; the client checks the name against the test CA.
    let credentials = try QUICTLSCredentials(certificates: [
        (Fixture.bytes("alpha.pem"), Fixture.bytes("alpha.key")),
        (Fixture.bytes("wildcard.pem"), Fixture.bytes("wildcard.key")),
    ])
    let pair = try QUICPair(serverName: serverName, serverCredentials: credentials)
    pair.pump()
    #expect(pair.client.connection.state == .established)
}

@Test func anExactNamePicksALaterCertificate() throws {
    let credentials = try QUICTLSCredentials(certificates: [
        (Fixture.bytes("wildcard.pem"), Fixture.bytes("wildcard.key")),
        (Fixture.bytes("alpha.pem"), Fixture.bytes("alpha.key")),
    ])
    let pair = try QUICPair(serverName: "alpha.test", serverCredentials: credentials)
    pair.pump()
    #expect(pair.client.connection.state == .established)
}
