// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import JesterProxy

/// `HMACSignatureFilter`: GitHub's documented test vector, the other hashes and base64, every refusal, and a large
/// body signed on the thread pool. (The adapters that hold the body back are tested live, over both protocols.)

/// GitHub's documented example ("Validating webhook deliveries"): this secret and payload give this signature.
private let githubSecret = "It's a Secret to Everybody"
private let githubPayload = Array("Hello, World!".utf8)
private let githubSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

private let loop = EmbeddedEventLoop()

private func filter(
    algorithm: HMACAlgorithm = .sha256, encoding: SignatureEncoding = .hex, prefix: String = "sha256=",
    header: String = "X-Hub-Signature-256", eventLoop: any EventLoop = loop, threadPool: NIOThreadPool = .singleton
) -> HMACSignatureFilter {
    let settings = HMACSignatureSettings(
        header: header, secretFile: "/etc/jester/github.secret", secret: Data(githubSecret.utf8),
        algorithm: algorithm, encoding: encoding, prefix: prefix, maxBody: 4096)
    return HMACSignatureFilter(name: "github", settings: settings, eventLoop: eventLoop, threadPool: threadPool)
}

/// A POST with these fields (`Name: value` lines) and body, as filters see it.
private func request(_ fields: [String], body: [UInt8]?) -> FilterInput {
    var head = HTTPHead()
    let text = "POST /hooks/github HTTP/1.1\r\nHost: x\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n"
    let bytes = ByteBuffer(string: text)
    let error = bytes.withUnsafeReadableBytes { HTTPHeadParser(limits: .init()).parseRequest($0, into: &head) }
    precondition(error == nil, "the test's head does not parse")
    let route = CompiledRoute(name: "r", maxBodySize: 0, action: .respond(head: ByteBuffer(), body: ByteBuffer()))
    var input = FilterInput(
        head: head, bytes: bytes, clientAddress: "127.0.0.1", clientIP: IPAddressBytes("127.0.0.1"), route: route,
        tls: nil, now: .now())
    input.body = body
    return input
}

/// The filter's verdict, when it decides at once.
private func verdict(_ filter: HMACSignatureFilter, _ fields: [String], body: [UInt8]? = githubPayload)
    -> FilterVerdict?
{
    let input = request(fields, body: body)
    let context = FilterContext(chain: FilterChain(filters: [filter]), input: input)
    guard case .decided(let verdict) = filter.apply(input, context: context) else { return nil }
    return verdict
}

/// Whether the verdict lets the request through.
private func passes(_ verdict: FilterVerdict?) -> Bool {
    if case .proceed? = verdict { return true }
    return false
}

/// The verdict must be 403 with a reason naming the filter and containing `why`, and never the digest the filter
/// computed (a client could read the access log's error through a support ticket).
private func expectRefused(
    _ verdict: FilterVerdict?, _ why: String, sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    guard case .fail(let status, let reason)? = verdict else {
        Issue.record("not refused: \(String(describing: verdict))", sourceLocation: sourceLocation)
        return
    }
    #expect(status == 403, sourceLocation: sourceLocation)
    #expect(reason.hasPrefix("hmac_signature github: ") && reason.contains(why), "\(reason)",
        sourceLocation: sourceLocation)
    #expect(!reason.contains("757107ea") && !reason.contains(githubSecret), sourceLocation: sourceLocation)
}

@Test func githubsTestVectorPasses() {
    #expect(passes(verdict(filter(), ["X-Hub-Signature-256: \(githubSignature)"])))
    // The field name in any case; hex digits in either case.
    #expect(passes(verdict(filter(), ["x-hub-signature-256: sha256=" + githubSignature.dropFirst(7).uppercased()])))
}

@Test func theOtherHashesAndBase64Pass() {
    let sha384 = "8ae941e23ce94331d5a5986b762bbdb2039fec41c133145da82908f381ba612379307f45738b252be379438ef60839c2"
    #expect(passes(verdict(filter(algorithm: .sha384, prefix: "sha384="), ["X-Hub-Signature-256: sha384=\(sha384)"])))
    // Shopify's form: the base64 digest alone.
    let shopify = filter(algorithm: .sha512, encoding: .base64, prefix: "", header: "X-Shopify-Hmac-Sha256")
    let sha512 = "Ee01WmF+mBNOhCASp5RMz1nBAlbLGCNXvX46QgE/8Hw3b4wUz1zBkj2iC1HWQlay+4678QCqZ6YTJvYf6oERvA=="
    #expect(passes(verdict(shopify, ["X-Shopify-Hmac-Sha256: \(sha512)"])))
    let sha256 = filter(encoding: .base64, prefix: "")
    #expect(passes(verdict(sha256, ["X-Hub-Signature-256: dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc="])))
    // A digest of the wrong hash is a refusal that says so (a sender's bug, not an attack).
    expectRefused(verdict(shopify, ["X-Shopify-Hmac-Sha256: dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc="]),
        "X-Shopify-Hmac-Sha256 has 32 bytes, sha512 makes 64")
    // base64url, or base64 without its padding, is not base64.
    expectRefused(verdict(sha256, ["X-Hub-Signature-256: dXEH6g6yUJ_CESIczphLijdXC211hsIsRvQ3nIsEPhc="]),
        "X-Hub-Signature-256 is not base64")
    expectRefused(verdict(sha256, ["X-Hub-Signature-256: dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc"]),
        "X-Hub-Signature-256 is not base64")
}

@Test func aRequestWithoutABodySignsTheEmptyBody() {
    let empty = "sha256=66a0c074deaa0f489ead6537e0d32f9a344b90bbeda705b6ed45ecd3b413fb40"
    #expect(passes(verdict(filter(), ["X-Hub-Signature-256: \(empty)"], body: nil)))
    #expect(passes(verdict(filter(), ["X-Hub-Signature-256: \(empty)"], body: [])))
    expectRefused(verdict(filter(), ["X-Hub-Signature-256: \(githubSignature)"], body: nil), "signature mismatch")
}

@Test func everyKindOfBadSignatureIsRefusedWithItsReason() {
    let hmac = filter()
    expectRefused(verdict(hmac, []), "no X-Hub-Signature-256 field")
    // Two fields: which one the sender meant is unknown, even when one of them is right.
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: \(githubSignature)", "X-Hub-Signature-256: sha256=00"]),
        "2 X-Hub-Signature-256 fields")
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: \(githubSignature)", "x-hub-signature-256: \(githubSignature)"]),
        "2 X-Hub-Signature-256 fields")
    // The prefix is compared exactly.
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: SHA256=" + githubSignature.dropFirst(7)]),
        "does not start with \"sha256=\"")
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: " + githubSignature.dropFirst(7)]),
        "does not start with \"sha256=\"")
    // Not hex: an odd count, a letter beyond f, nothing at all, a list of two.
    for bad in ["sha256=757", "sha256=" + githubSignature.dropFirst(8) + "g", "sha256=",
        "sha256=\(githubSignature.dropFirst(7)), sha256=00"]
    {
        expectRefused(verdict(hmac, ["X-Hub-Signature-256: \(bad)"]), "X-Hub-Signature-256 is not hex")
    }
    // SHA-1's 20 bytes (GitHub's older X-Hub-Signature) against SHA-256.
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: sha256=" + String(repeating: "ab", count: 20)]),
        "X-Hub-Signature-256 has 20 bytes, sha256 makes 32")
    // The right length, the wrong digest: a changed body, or another secret.
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: \(githubSignature)"], body: Array("Hello, World?".utf8)),
        "signature mismatch")
    let flipped = "sha256=857107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    expectRefused(verdict(hmac, ["X-Hub-Signature-256: \(flipped)"]), "signature mismatch")
}

@Test func theFilterAsksForTheBodyUpToMaxBody() throws {
    let hmac = filter()
    #expect(hmac.bodyLimit == 4096)
    #expect(FilterChain(filters: [hmac]).bodyLimit == 4096)
    // Compiled from a loaded configuration: the kind makes this filter.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jester-hmac-proxy-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try Data((githubSecret + "\n").utf8).write(to: directory.appendingPathComponent("github.secret"))
    let configuration = try ConfigLoader(environment: [:]).load(text: """
        [[listeners]]
        name = "main"
        address = "127.0.0.1:8080"

        [filters.github]
        kind = "hmac_signature"
        header = "X-Hub-Signature-256"
        prefix = "sha256="
        secret_file = "github.secret"
        max_body = "64KiB"

        [[routes]]
        filters = ["github"]
        respond = { status = 204 }
        """, file: directory.appendingPathComponent("jester.toml").path)
    let compiled = RequestFilters.compile(configuration.filters, eventLoop: loop)
    let made = try #require(compiled["github"] as? HMACSignatureFilter)
    #expect(made.bodyLimit == 65536)
    #expect(passes(verdict(made, ["X-Hub-Signature-256: \(githubSignature)"])))
}

@Test func aLargeBodyIsSignedOffTheLoopAndDecidedWhenItIsBack() throws {
    let body = (0..<100_000).map { UInt8($0 % 251) }
    #expect(body.count >= HMACSignatureFilter.offLoopThreshold)
    let good = "X-Hub-Signature-256: sha256=760d56451c6b0f10f4ff631b19d782cf06d208cd34eab71dcbbee80ab4c50748"
    let bad = "X-Hub-Signature-256: sha256=860d56451c6b0f10f4ff631b19d782cf06d208cd34eab71dcbbee80ab4c50748"
    // Its own loop: the test runs it, while other tests may run at the same time.
    let ownLoop = EmbeddedEventLoop()
    let hmac = filter(eventLoop: ownLoop)
    for (field, shouldPass) in [(good, true), (bad, false)] {
        let context = FilterContext(chain: FilterChain(filters: [hmac]), input: request([field], body: body))
        // Signed on the thread pool: the run waits. (An embedded loop lets the pool's thread complete the future
        // inline; on a loaded machine that can land before the filter returned, and the run then decides at
        // once. A real loop always hops back first.)
        var decided: FilterVerdict? = context.start()
        context.onDecision = { decided = $0 }
        let deadline = Date().addingTimeInterval(10)
        while decided == nil, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.002)
            ownLoop.run()
        }
        if shouldPass {
            #expect(passes(decided))
        } else {
            expectRefused(decided, "signature mismatch")
        }
    }
    // A field that is wrong on its face is refused at once, without signing anything.
    expectRefused(verdict(hmac, [], body: body), "no X-Hub-Signature-256 field")
}

@Test func aLargeBodyThatCannotBeSignedIsRefusedNotPassed() throws {
    // A thread pool that is not running (as in a worker shutting down): the request fails closed.
    let stopped = NIOThreadPool(numberOfThreads: 1)
    let ownLoop = EmbeddedEventLoop()
    let body = [UInt8](repeating: 0x61, count: HMACSignatureFilter.offLoopThreshold)
    let hmac = filter(eventLoop: ownLoop, threadPool: stopped)
    let context = FilterContext(chain: FilterChain(filters: [hmac]), input: request([
        "X-Hub-Signature-256: sha256=" + String(repeating: "00", count: 32)
    ], body: body))
    // (The pool refuses at once, so the refusal comes while the filter is still applying: taken synchronously.)
    var decided = context.start()
    if decided == nil { context.onDecision = { decided = $0 } }
    ownLoop.run()
    guard case .fail(let status, let reason)? = decided else {
        Issue.record("not refused: \(String(describing: decided))")
        return
    }
    #expect(status == 503 && reason == "hmac_signature github: not checked")
}
