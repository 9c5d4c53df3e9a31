// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterFetch
import JesterTLS
import NIOCore
import NIOPosix
import Testing

/// `HTTPFetcher` against servers on loopback: plain HTTP, HTTPS with the certificate checked against a CA and
/// the URL's host, a server that never answers, and one whose body is too large.

private let tlsFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tls")

private func fixture(_ name: String) -> [UInt8] {
    Array(try! Data(contentsOf: tlsFixtures.appendingPathComponent(name)))
}

/// Answers the first bytes of each connection with `response` and closes; `nil` answers nothing.
private final class ScriptedResponder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let response: String?

    init(response: String?) {
        self.response = response
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let response else { return }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: response)))
            .whenComplete { _ in context.close(promise: nil) }
    }
}

/// A loopback server (TLS with `certificate` when given) answering `response`; returns its port and channel.
private func serve(
    _ response: String?, certificate: String? = nil, on group: MultiThreadedEventLoopGroup
) throws -> (port: Int, channel: any Channel) {
    let tls = try certificate.map { name in
        try TLSServerContext(TLSServerConfiguration(certificates: [
            .init(chainPEM: fixture("\(name).pem"), keyPEM: fixture("\(name).key")),
        ]))
    }
    let channel = try ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tls { try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls)) }
                try channel.pipeline.syncOperations.addHandler(ScriptedResponder(response: response))
            }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
    return (channel.localAddress!.port!, channel)
}

private let jwks = #"{"keys":[]}"#
private let ok = "HTTP/1.1 200 OK\r\nContent-Length: \(jwks.utf8.count)\r\nConnection: close\r\n\r\n\(jwks)"

private func code(_ body: () throws -> FetchResponse) -> FetchError.Code? {
    do {
        _ = try body()
        return nil
    } catch let error as FetchError {
        return error.code
    } catch {
        return nil
    }
}

@Test func fetchesOverPlainHTTPAndHTTPSCheckingTheCertificate() throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let trusting = HTTPFetcher(eventLoop: group.next(), trustedCAPEM: fixture("ca.pem"))
    let plain = try serve(ok, on: group)
    let secure = try serve(ok, certificate: "alpha", on: group)
    let wrongName = try serve(ok, certificate: "wildcard", on: group)
    defer { for server in [plain, secure, wrongName] { server.channel.close(promise: nil) } }

    let answer = try trusting.get(
        FetchURL("http://127.0.0.1:\(plain.port)/jwks")!, timeout: .seconds(5), maximumBodySize: 1024).wait()
    #expect(answer.status == 200 && answer.body == Array(jwks.utf8))
    for host in ["127.0.0.1", "localhost"] {
        let answer = try trusting.get(
            FetchURL("https://\(host):\(secure.port)/jwks")!, timeout: .seconds(5), maximumBodySize: 1024).wait()
        #expect(answer.body == Array(jwks.utf8), "\(host)")
    }
    // The certificate does not name 127.0.0.1; and the system's CAs do not include the test CA.
    #expect(code {
        try trusting.get(FetchURL("https://127.0.0.1:\(wrongName.port)/")!, timeout: .seconds(5), maximumBodySize: 1024)
            .wait()
    } == .tls)
    let system = HTTPFetcher(eventLoop: group.next())
    #expect(code {
        try system.get(FetchURL("https://127.0.0.1:\(secure.port)/")!, timeout: .seconds(5), maximumBodySize: 1024).wait()
    } == .tls)
}

@Test func failsOnSilenceOversizeAndRefusal() throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let fetcher = HTTPFetcher(eventLoop: group.next())
    let silent = try serve(nil, on: group)
    let large = try serve(ok, on: group)
    defer { for server in [silent, large] { server.channel.close(promise: nil) } }
    let started = Date()
    #expect(code {
        try fetcher.get(FetchURL("http://127.0.0.1:\(silent.port)/")!, timeout: .milliseconds(300), maximumBodySize: 1024)
            .wait()
    } == .timeout)
    #expect(Date().timeIntervalSince(started) < 3)
    #expect(code {
        try fetcher.get(FetchURL("http://127.0.0.1:\(large.port)/")!, timeout: .seconds(5), maximumBodySize: 4).wait()
    } == .tooLarge)
    // A port nothing listens on (the silent server's, once closed).
    let closedPort = silent.port
    try silent.channel.close().wait()
    #expect(code {
        try fetcher.get(FetchURL("http://127.0.0.1:\(closedPort)/")!, timeout: .seconds(5), maximumBodySize: 1024).wait()
    } == .connect)
}
