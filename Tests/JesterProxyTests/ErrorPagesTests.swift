// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import NIOCore
import Testing

@testable import JesterProxy

/// `ErrorPages`: which page a status gets (exact over class), the formats' bodies, placeholders escaped for the
/// page's type, and which upstream statuses are intercepted. (The answers on the wire are the live tests'.)
@Suite struct ErrorPagesTests {
    static func pages(
        format: ErrorPageSettings.Format = .text, _ pages: [(String, String, String)] = [], intercept: [String] = []
    ) -> ErrorPages {
        var settings = ErrorPageSettings()
        settings.format = format
        settings.pages = pages.map {
            ErrorPageSettings.Page(statuses: .init($0.0)!, path: $0.1, body: Data($0.2.utf8))
        }
        settings.intercept = intercept.map { ErrorPageSettings.StatusPattern($0)! }
        return ErrorPages(settings)
    }

    static func answer(_ pages: ErrorPages, _ status: Int, id: String = "abc") -> (String?, String) {
        let response = Array(id.utf8).withUnsafeBytes {
            pages.response(status: status, fields: [LocalResponse.Field("Retry-After", "1")], requestID: $0)
        }
        #expect(response.status == status)
        #expect(response.fields.contains(LocalResponse.Field("Retry-After", "1")))
        let type = response.fields.first { $0.name == "Content-Type" }?.value
        return (type, String(buffer: response.body))
    }

    @Test func theExactStatusBeatsItsClass() {
        let pages = Self.pages([("5xx", "e/5xx.html", "class {status}"), ("503", "e/503.txt", "exact {status}")])
        #expect(Self.answer(pages, 503) == ("text/plain; charset=utf-8", "exact 503"))
        #expect(Self.answer(pages, 502) == ("text/html; charset=utf-8", "class 502"))
    }

    @Test func aStatusWithoutAPageGetsTheFormat() {
        let text = Self.pages([("5xx", "e.html", "x")])
        #expect(Self.answer(text, 404) == ("text/plain; charset=utf-8", "404 Not Found\n"))
        let problem = Self.pages(format: .problemJSON)
        let (type, body) = Self.answer(problem, 404, id: "r-1")
        #expect(type == "application/problem+json")
        let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        #expect(json?["type"] as? String == "about:blank")
        #expect(json?["title"] as? String == "Not Found")
        #expect(json?["status"] as? Int == 404)
        #expect(json?["request_id"] as? String == "r-1")
        #expect(json?.count == 4)
        let (htmlType, html) = Self.answer(Self.pages(format: .html), 502)
        #expect(htmlType == "text/html; charset=utf-8")
        #expect(html.contains("<title>502 Bad Gateway</title>"))
    }

    @Test func placeholdersAreEscapedForThePagesType() {
        let pages = Self.pages([
            ("404", "404.html", "<p>{status} {reason} {request_id}</p>"),
            ("400", "400.json", "{\"id\":\"{request_id}\"}"),
            ("500", "500.txt", "{request_id} {unknown} {"),
        ])
        let id = "<a href=\"x\">&'\\"
        #expect(Self.answer(pages, 404, id: id).1 == "<p>404 Not Found &lt;a href=&quot;x&quot;&gt;&amp;&#39;\\</p>")
        let json = Self.answer(pages, 400, id: id + "\u{1}").1
        #expect(json == "{\"id\":\"<a href=\\\"x\\\">&'\\\\\\u0001\"}")
        #expect((try? JSONSerialization.jsonObject(with: Data(json.utf8))) != nil)
        #expect(Self.answer(pages, 500, id: id).1 == id + " {unknown} {")
        // obs-text in a client's id: ISO-8859-1 characters, so both pages stay valid UTF-8.
        let latin = [UInt8(ascii: "a"), 0xE9]
        func render(_ status: Int) -> [UInt8] {
            let response = latin.withUnsafeBytes { pages.response(status: status, fields: [], requestID: $0) }
            return Array(response.body.readableBytesView)
        }
        #expect(String(decoding: render(404), as: UTF8.self) == "<p>404 Not Found a&#xe9;</p>")
        let latinJSON = render(400)
        #expect(String(decoding: latinJSON, as: UTF8.self) == "{\"id\":\"a\\u00e9\"}")
        let decoded = try? JSONSerialization.jsonObject(with: Data(latinJSON)) as? [String: String]
        #expect(decoded?["id"] == "a\u{e9}")
    }

    @Test func interceptTakesStatusesAndClasses() {
        let pages = Self.pages(intercept: ["503", "4xx"])
        #expect(pages.intercepts(503) && pages.intercepts(404) && pages.intercepts(499))
        #expect(!pages.intercepts(502) && !pages.intercepts(500) && !pages.intercepts(200))
        #expect(!Self.pages().intercepts(503))
    }

    @Test func onlyPlainErrorsAreMarkedForThePages() {
        #expect(LocalResponse.error(401, fields: [LocalResponse.Field("WWW-Authenticate", "Basic")]).isPlainError)
        #expect(!LocalResponse(status: 204).isPlainError)  // a CORS preflight's answer
        #expect(!LocalResponse(status: 404, body: ByteBuffer(string: "own")).isPlainError)  // a filter's own body
    }

    @Test func templatesSplitAtPlaceholdersOnly() {
        #expect(ErrorPages.Template.segments(of: "a{status}{reason}b{request_id}") == [
            .literal(Array("a".utf8)), .status, .reason, .literal(Array("b".utf8)), .requestID,
        ])
        #expect(ErrorPages.Template.segments(of: "") == [])
        #expect(ErrorPages.Template.segments(of: "{stat}") == [.literal(Array("{stat}".utf8))])
    }
}
