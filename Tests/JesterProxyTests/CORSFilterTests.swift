// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

/// `CORSFilter`: the request fields it reads (any case, repeats joined), and how each `CORSPolicy` decision
/// becomes a verdict: 204 or 403 answers for preflights, response fields for the rest. (The policy's decisions
/// are JesterCore's tests; the answers on the wire are the live tests', over both protocols.)

private let settings = CORSSettings(
    allowOrigins: .listed(["https://app.example.com", "https://*.example.org"]),
    allowMethods: .listed(["GET", "POST", "PUT"]), allowHeaders: .listed(["Content-Type"]),
    exposeHeaders: .listed(["X-Total-Count"]), allowCredentials: true, maxAge: .seconds(300))

/// A request with this method and these fields (`Name: value` lines), as filters see it.
private func request(_ method: String, _ fields: [String]) -> FilterInput {
    var head = HTTPHead()
    let text = "\(method) /api/items HTTP/1.1\r\nHost: x\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n"
    let bytes = ByteBuffer(string: text)
    let error = bytes.withUnsafeReadableBytes { HTTPHeadParser(limits: .init()).parseRequest($0, into: &head) }
    precondition(error == nil, "the test's head does not parse")
    let route = CompiledRoute(name: "r", maxBodySize: 0, action: .respond(head: ByteBuffer(), body: ByteBuffer()))
    return FilterInput(
        head: head, bytes: bytes, clientAddress: "127.0.0.1", clientIP: IPAddressBytes("127.0.0.1"), route: route,
        tls: nil, now: .now())
}

/// The filter's verdict and the fields it added to the response.
private func run(_ method: String, _ fields: [String], settings: CORSSettings = settings)
    -> (verdict: FilterVerdict?, responseFields: [String])
{
    let filter = CORSFilter(name: "browsers", settings: settings)
    let input = request(method, fields)
    let context = FilterContext(chain: FilterChain(filters: [filter]), input: input)
    guard case .decided(let verdict) = filter.apply(input, context: context) else { return (nil, []) }
    return (verdict, context.responseFields.map { "\($0.name): \($0.value)" })
}

@Test func theFilterReadsItsFieldsInAnyCaseAndJoinsRepeats() {
    let input = request("OPTIONS", [
        "ORIGIN: https://app.example.com", "access-control-request-method: PUT",
        "Access-Control-Request-Headers: content-type", "Access-Control-Request-Headers: x-a",
        "Access-Control-Request-Private-Network: true", "X-Other: 1",
    ])
    #expect(input.corsFields() == CORSRequestFields(
        origin: "https://app.example.com", requestMethod: "PUT", requestHeaders: "content-type, x-a",
        requestPrivateNetwork: "true"))
    #expect(request("GET", []).corsFields() == CORSRequestFields())
}

@Test func anAllowedPreflightIsAnswered204WithItsFieldsAndNoReason() {
    let (verdict, responseFields) = run("OPTIONS", [
        "Origin: https://api.example.org", "Access-Control-Request-Method: PUT",
        "Access-Control-Request-Headers: content-type",
    ])
    guard case .respond(let response, let reason)? = verdict else {
        Issue.record("not answered: \(String(describing: verdict))")
        return
    }
    #expect(response.status == 204 && response.body.readableBytes == 0)
    #expect(reason.isEmpty, "an answered preflight is no error in the access log")
    #expect(response.fields.map { "\($0.name): \($0.value)" } == [
        "Access-Control-Allow-Origin: https://api.example.org", "Access-Control-Allow-Credentials: true",
        "Access-Control-Allow-Methods: GET, POST, PUT", "Access-Control-Allow-Headers: Content-Type",
        "Access-Control-Max-Age: 300",
        "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    ])
    #expect(responseFields.isEmpty, "the answer carries the fields once, not again through responseFields")
}

@Test func aRefusedPreflightIs403WithAReasonAndNoAllowFields() {
    for (fields, why) in [
        (["Origin: https://evil.example.com", "Access-Control-Request-Method: GET"],
            "origin https://evil.example.com is not allowed"),
        (["Origin: https://app.example.com", "Access-Control-Request-Method: DELETE"], "method DELETE is not allowed"),
        (["Origin: https://app.example.com", "Access-Control-Request-Method: GET",
            "Access-Control-Request-Headers: authorization"], "header authorization is not allowed"),
        (["Origin: https://app.example.com", "Access-Control-Request-Method: GET",
            "Access-Control-Request-Private-Network: true"], "private network access is not allowed"),
        (["Origin: https://app.example.com", "Origin: https://evil.example.com", "Access-Control-Request-Method: GET"],
            "is not allowed"),
    ] {
        guard case .respond(let response, let reason)? = run("OPTIONS", fields).verdict else {
            Issue.record("not refused: \(fields)")
            continue
        }
        #expect(response.status == 403)
        #expect(reason.hasPrefix("cors browsers: preflight refused: ") && reason.contains(why), "\(reason)")
        #expect(!response.fields.contains { $0.name.hasPrefix("Access-Control-") })
        #expect(response.fields.contains {
            $0 == LocalResponse.Field("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        })
    }
}

@Test func actualRequestsProceedWithTheirFields() {
    let allowed = run("POST", ["Origin: https://app.example.com"])
    #expect(isProceed(allowed.verdict))
    #expect(allowed.responseFields == [
        "Access-Control-Allow-Origin: https://app.example.com", "Access-Control-Allow-Credentials: true",
        "Access-Control-Expose-Headers: X-Total-Count", "Vary: Origin",
    ])
    // Refused origins and requests without one go on too, with Vary only.
    for fields in [["Origin: https://evil.example.com"], [], ["Access-Control-Request-Method: GET"]] {
        let refused = run("GET", fields)
        #expect(isProceed(refused.verdict) && refused.responseFields == ["Vary: Origin"], "\(fields)")
    }
    // OPTIONS without Access-Control-Request-Method is an actual request, for the upstream to answer.
    let options = run("OPTIONS", ["Origin: https://app.example.com"])
    #expect(isProceed(options.verdict) && options.responseFields.first?.hasSuffix("https://app.example.com") == true)
}

@Test func anyOriginSendsStarEvenWithoutAnOrigin() {
    let any = CORSSettings(allowOrigins: .any)
    for fields in [[], ["Origin: https://anyone.example"]] {
        let result = run("GET", fields, settings: any)
        #expect(isProceed(result.verdict) && result.responseFields == ["Access-Control-Allow-Origin: *"])
    }
}

@Test func theCompilerMakesCORSFilters() {
    let compiled = RequestFilters.compile(
        [FilterSettings(name: "browsers", kind: .cors(settings))], eventLoop: EmbeddedEventLoop())
    #expect(compiled["browsers"] is CORSFilter)
}

private func isProceed(_ verdict: FilterVerdict?) -> Bool {
    if case .proceed? = verdict { return true }
    return false
}
