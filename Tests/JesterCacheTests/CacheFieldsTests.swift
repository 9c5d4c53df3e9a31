// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// The field list the decisions work on, and the normalization Vary'd values get (RFC 9111 §4.1).
@Suite struct CacheFieldsTests {
    @Test func lookupsIgnoreCaseAndRepeatedSingletonsAreUnusable() {
        let fields: CacheFields = [("Date", "a"), ("X-A", "1"), ("x-a", "2"), ("ETAG", #""e""#)]
        #expect(fields.contains("date") && fields.contains("DATE") && !fields.contains("dat"))
        #expect(fields.values("X-a") == ["1", "2"])
        #expect(fields.first("x-A") == "1")
        #expect(fields.single("Date") == .value("a"))
        #expect(fields.single("x-a") == .repeated)
        #expect(fields.single("Expires") == .absent)
        #expect(fields.single("etag") == .value(#""e""#))
        #expect(!CacheFields.sameName("é", "É"))  // ASCII case only
    }

    @Test func setReplacesEveryLineInPlaceAndRemoveRemovesThemAll() {
        var fields: CacheFields = [("A", "1"), ("Age", "5"), ("B", "2"), ("age", "6")]
        fields.set("AGE", "9")
        #expect(fields == [("A", "1"), ("Age", "9"), ("B", "2")])
        fields.set("C", "3")
        #expect(fields.fields.last == CacheFields.Field("C", "3"))
        fields.remove("a")
        #expect(fields == [("Age", "9"), ("B", "2"), ("C", "3")])
    }

    @Test(arguments: [
        ("gzip, br", "gzip,br"),
        ("gzip ; q=0.5 ,br", "gzip;q=0.5,br"),
        ("text/html;  level = 1", "text/html;level=1"),
        ("en-US,  fr", "en-US,fr"),
        ("a b", "a b"),  // a blank inside a member is kept, collapsed to one
        ("a    b", "a b"),
        ("", ""),
    ])
    func varyValuesAreTightened(value: String, expected: String) {
        #expect(VaryValue(name: "X-Any", request: [("X-Any", value)]).value == expected)
    }

    @Test func codingsCharsetsAndLanguagesCompareWithoutCase() {
        #expect(VaryValue(name: "Accept-Encoding", request: [("accept-encoding", "GZip")]).value == "gzip")
        #expect(VaryValue(name: "Accept-Language", request: [("Accept-Language", "en-US")]).value == "en-us")
        #expect(VaryValue(name: "Accept", request: [("Accept", "Text/HTML")]).value == "Text/HTML")
        #expect(VaryValue(name: "Accept", request: []).value == nil)
        #expect(VaryValue(name: "ACCEPT", request: []).name == "accept")
    }
}
