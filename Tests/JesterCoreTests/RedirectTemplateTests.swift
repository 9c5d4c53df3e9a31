// SPDX-License-Identifier: Apache-2.0
import JesterCore
import XCTest

final class RedirectTemplateTests: XCTestCase {
    private func render(_ template: String, scheme: String = "http", host: Substring, target: Substring) throws -> String {
        try RedirectTemplate(parsing: template).render(scheme: scheme, host: host, target: target)
    }

    func testHTTPSRedirectKeepsPathAndQuery() throws {
        XCTAssertEqual(
            try render("https://{hostname}{target}", host: "localhost:19710", target: "/foo?x=1"),
            "https://localhost/foo?x=1")
        XCTAssertEqual(
            try render("https://{hostname}:8443{path}", host: "example.com", target: "/a/b?c"),
            "https://example.com:8443/a/b")
    }

    func testEveryPlaceholder() throws {
        let template = "{scheme}|{host}|{hostname}|{port}|{path}|{query}|{target}"
        XCTAssertEqual(
            try render(template, scheme: "https", host: "www.example.com:8443", target: "/p?q=1&r"),
            "https|www.example.com:8443|www.example.com|8443|/p|q=1&r|/p?q=1&r")
        XCTAssertEqual(try render(template, host: "example.com", target: "/"), "http|example.com|example.com|80|/||/")
        XCTAssertEqual(try render("{port}", scheme: "https", host: "a", target: "/"), "443")
    }

    func testIPv6HostsKeepTheirBrackets() throws {
        XCTAssertEqual(try render("{hostname}/{port}", host: "[::1]:8080", target: "/"), "[::1]/8080")
        XCTAssertEqual(try render("{hostname}/{port}", host: "[::1]", target: "/"), "[::1]/80")
    }

    func testAbsoluteFormTargetsRenderTheirOriginForm() throws {
        XCTAssertEqual(try render("{target}", host: "a", target: "http://a.example/x?y=1"), "/x?y=1")
        XCTAssertEqual(try render("{path}", host: "a", target: "http://a.example"), "/")
        XCTAssertEqual(try render("{target}", host: "a", target: "http://a.example?q"), "/?q")
    }

    func testLiteralBracesAndFixedText() throws {
        let template = try RedirectTemplate(parsing: "https://example.com/{{x}}")
        XCTAssertEqual(template.fixedText, "https://example.com/{x}")
        XCTAssertEqual(template.description, "https://example.com/{{x}}")
        XCTAssertNil(try RedirectTemplate(parsing: "https://{host}/").fixedText)
        XCTAssertEqual(try RedirectTemplate(parsing: "https://{host}{target}").description, "https://{host}{target}")
    }

    func testMalformedTemplatesSayWhereAndWhy() {
        XCTAssertThrowsError(try RedirectTemplate(parsing: "https://{hots}/")) { error in
            let error = error as! RedirectTemplate.ParseError
            XCTAssertEqual(error.offset, 8)
            XCTAssertTrue(error.message.contains("unknown placeholder {hots}"), error.message)
            XCTAssertTrue(error.message.contains("{hostname}"), error.message)
        }
        XCTAssertThrowsError(try RedirectTemplate(parsing: "https://{host")) { error in
            XCTAssertTrue("\(error)".contains("without its closing"), "\(error)")
        }
        XCTAssertThrowsError(try RedirectTemplate(parsing: "https://x}")) { error in
            XCTAssertTrue("\(error)".contains("lone '}'"), "\(error)")
        }
        // The environment syntax is the loader's, never a placeholder: once expanded, braces left are literal text.
        XCTAssertThrowsError(try RedirectTemplate(parsing: "{}"))
    }
}
