// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import JesterControl
import Testing

@testable import JesterSupervisor

/// The admin API's cache endpoints, pure parts: the purge body (`AdminCachePurgeRequest`), the answers' JSON
/// beside jesterctl's, and the dispatcher's refusal as HTTP. The routes are in AdminAPITests' table; the live
/// tier (Tests/Live/test_admin_api.py) purges a real entry.

// MARK: The purge body

@Test(arguments: [
    (#"{"uri": "https://example.com/a?b"}"#, CachePurgeTarget.key("https://example.com/a?b")),
    (#"{"prefix":"http://127.0.0.1:8080/img/"}"#, .prefix("http://127.0.0.1:8080/img/")),
    (" \r\n\t{\"prefix\": \"https://example.com/\"}\n", .prefix("https://example.com/")),
    // The key's text is taken as it is: the store compares it byte for byte with the keys' URIs.
    (#"{"uri": "https://example.com/caf\u00e9?q=a%20b"}"#, .key("https://example.com/café?q=a%20b")),
])
func aPurgeBodyNamesOneKeyOrOnePrefix(body: String, expected: CachePurgeTarget) throws {
    #expect(try AdminCachePurgeRequest.target(from: Array(body.utf8)) == expected)
}

@Test(arguments: [
    ("", "no body"),
    ("  \n", "no body"),
    ("uri=https://example.com/", "not JSON"),
    (#"{"uri": "https://example.com/"#, "not JSON"),
    (#"{"uri": "https://a/", "uri": "https://b/"}"#, "not JSON"),
    (#"{"uri": "https://example.com/"} {}"#, "not JSON"),
    (#"["https://example.com/"]"#, "must be a JSON object"),
    (#""https://example.com/""#, "must be a JSON object"),
    ("null", "must be a JSON object"),
    ("{}", "neither \"uri\" nor \"prefix\""),
    (#"{"uri": "https://example.com/a", "prefix": "https://example.com/"}"#, "together"),
    (#"{"prefx": "https://example.com/"}"#, "unknown member \"prefx\""),
    (#"{"uri": "https://example.com/a", "all": true}"#, "unknown member \"all\""),
    (#"{"uri": 1}"#, "\"uri\" must be a string"),
    (#"{"prefix": null}"#, "\"prefix\" must be a string"),
    (#"{"prefix": ["https://example.com/"]}"#, "\"prefix\" must be a string"),
    (#"{"uri": ""}"#, "\"uri\" is empty"),
    (#"{"prefix": ""}"#, "would purge everything"),
    (#"{"uri": "/a?b"}"#, "absolute http:// or https:// URI"),
    (#"{"prefix": "example.com/"}"#, "absolute http:// or https:// URI"),
    (#"{"prefix": "https://"}"#, "absolute http:// or https:// URI"),
    (#"{"uri": "HTTPS://example.com/"}"#, "absolute http:// or https:// URI"),
])
func anyOtherPurgeBodyIsRefusedSayingWhy(body: String, reason: String) {
    do {
        let target = try AdminCachePurgeRequest.target(from: Array(body.utf8))
        Issue.record("\(body.debugDescription) was read as \(target)")
    } catch {
        #expect(error.message.contains(reason), "\(error.message)")
    }
}

@Test func refusalsOfTheBodyShowWhatToSend() {
    for body in ["", "[]", "{}", #"{"x": 1}"#] {
        do {
            _ = try AdminCachePurgeRequest.target(from: Array(body.utf8))
            Issue.record("\(body) was accepted")
        } catch {
            #expect(error.message.hasSuffix(AdminCachePurgeRequest.shape), "\(error.message)")
        }
    }
}

@Test func bodyBytesThatAreNotUTF8AreRefused() {
    let body = Array(#"{"uri": "https://example.com/"#.utf8) + [0xFF] + Array(#""}"#.utf8)
    #expect(throws: AdminCachePurgeRequest.Refusal.self) { try AdminCachePurgeRequest.target(from: body) }
}

// MARK: The answers

@Test func theStatusAnswerIsJesterctlsJSON() throws {
    let report = CacheStatusReport(
        bytesUsed: 3 << 20, byteBudget: 64 << 20, entries: 12, hits: 3, misses: 1, stores: 4, evictions: 0,
        collapsed: 2)
    let answer = APIResponse.json(200, report)
    let jesterctl = try ControlJSONEncoder(options: [.sortedKeys, .snakeCaseKeys]).encode(report)
    #expect(try JSONTree.parse(answer.body) == JSONTree.parse(jesterctl))
    guard case .object(let members) = try JSONTree.parse(answer.body) else {
        Issue.record("not an object")
        return
    }
    #expect(members.keys.sorted() == [
        "byte_budget", "bytes_used", "collapsed", "entries", "evictions", "hit_ratio", "hits", "misses", "stores",
    ])
    #expect(members["hit_ratio"] == .number("0.75"))
    let purged = String(decoding: APIResponse.json(200, CachePurgeResult(removed: 2)).body, as: UTF8.self)
    #expect(purged == #"{"removed":2}"#)
}

@Test func noRouteCachingIsA404WithJesterctlsMessage() {
    let message = "the HTTP cache is not enabled: no route caches"
    let answer = Master.cacheFailure(.failure(message: message, reason: .notFound))
    #expect(answer.status == 404)
    #expect(String(decoding: answer.body, as: UTF8.self).contains(message))
    // Anything else from the dispatcher is a bug, said as one.
    #expect(Master.cacheFailure(.failure(message: "broken", reason: .invalidRequest)).status == 500)
    #expect(Master.cacheFailure(.done(success: true, message: "?")).status == 500)
}
