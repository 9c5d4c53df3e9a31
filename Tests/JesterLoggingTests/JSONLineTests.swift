// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterLogging
import Logging
import Testing

/// The line `metadata` makes, parsed back, so the tests check JSON types and not byte layout alone.
private func render(_ metadata: Logger.Metadata) -> (text: String, object: [String: Any]) {
    var line = JSONLine()
    for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { line.field(key, value) }
    let bytes = line.finish()
    let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    return (String(decoding: bytes, as: UTF8.self), object)
}

@Test func integersAndBooleansAreJSONNumbersAndBooleans() {
    let (text, object) = render([
        "pid": .stringConvertible(9954), "generation": .stringConvertible(Int32(3)),
        "bytes": .stringConvertible(UInt64(1 << 40)), "draining": .stringConvertible(true),
        "healthy": .stringConvertible(false), "quoted": "9954",
    ])
    #expect(text == #"{"bytes":1099511627776,"draining":true,"generation":3,"healthy":false,"pid":9954,"#
        + #""quoted":"9954"}"#)
    #expect(object["pid"] as? Int == 9954)
}

@Test func floatingPointNumbersAreNumbersAndNonFiniteOnesStrings() {
    let (text, object) = render([
        "ratio": .stringConvertible(0.25), "whole": .stringConvertible(3.0), "huge": .stringConvertible(1e20),
        "tiny": .stringConvertible(Float(0.5)), "nan": .stringConvertible(Double.nan),
        "inf": .stringConvertible(-Double.infinity),
    ])
    #expect(text == #"{"huge":1e+20,"inf":"-inf","nan":"nan","ratio":0.25,"tiny":0.5,"whole":3.0}"#)
    #expect(object["ratio"] as? Double == 0.25)
    #expect(object["huge"] as? Double == 1e20)
}

@Test func arraysAreJSONArraysOfRenderedValues() {
    let (text, object) = render([
        "errors": .array(["a.toml:1:1: error: \"x\"", "b.toml:2:3: error: y"]),
        "mixed": .array([.stringConvertible(1), "two", .stringConvertible(true), .array([])]),
    ])
    #expect(text == #"{"errors":["a.toml:1:1: error: \"x\"","b.toml:2:3: error: y"],"mixed":[1,"two",true,[]]}"#)
    #expect((object["errors"] as? [String])?.count == 2)
}

@Test func dictionariesAreObjectsWithSortedKeysAndNestedValues() {
    let (text, object) = render([
        "reasons": .dictionary([
            "wrong version number": .stringConvertible(50), "alert": .stringConvertible(2),
            "nested": .dictionary(["list": .array(["x"])]),
        ]),
        "empty": .dictionary([:]),
    ])
    #expect(text == #"{"empty":{},"reasons":{"alert":2,"nested":{"list":["x"]},"wrong version number":50}}"#)
    #expect((object["reasons"] as? [String: Any])?["wrong version number"] as? Int == 50)
}

@Test func stringsAreEscapedEverywhereIncludingKeysAndNestedValues() {
    let (text, object) = render([
        "message\"key": "quote \" backslash \\ newline \n return \r tab \t bell \u{7} delete \u{7F} é",
        "list": .array(["\u{1}"]), "map": .dictionary(["k\n": "v\\"]),
        "described": .stringConvertible(URL(fileURLWithPath: "/a\"b")),
    ])
    #expect(text.contains(
        #""message\"key":"quote \" backslash \\ newline \n return \r tab \t bell \u0007 delete \u007f é""#))
    #expect(text.contains(#""list":["\u0001"]"#))
    #expect(text.contains(#""map":{"k\n":"v\\"}"#))
    #expect(object.count == 4)
    #expect(object["described"] as? String == "file:///a%22b")
}

@Test func handlerLinesCarryComponentLevelAndTypedMetadata() throws {
    var pipe: [Int32] = [0, 0]
    #expect(Glibc.pipe(&pipe) == 0)
    let writer = LogWriter(fd: pipe[1])
    var handler = JSONLogHandler(label: LogComponent.health.rawValue, level: .info, writer: writer)
    handler[metadataKey: "pid"] = .stringConvertible(42)
    handler.log(event: LogEvent(
        level: .notice, message: "upstream target health changed",
        metadata: ["fails": .stringConvertible(3), "reason": "connection refused"],
        source: "test", file: #file, function: #function, line: #line))
    writer.flush()
    var buffer = [UInt8](repeating: 0, count: 4096)
    let count = read(pipe[0], &buffer, buffer.count)
    close(pipe[0])
    close(pipe[1])
    let line = try #require(buffer[..<max(0, count)].split(separator: 0x0A).first)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
    #expect(object["component"] as? String == "jester.health")
    #expect(object["level"] as? String == "notice")
    #expect(object["pid"] as? Int == 42)
    #expect(object["fails"] as? Int == 3)
    #expect(object["reason"] as? String == "connection refused")
}

@Test func everyComponentIsNamespacedAndDistinct() {
    let names = LogComponent.allCases.map(\.rawValue)
    #expect(Set(names).count == names.count)
    #expect(names.allSatisfy { $0.hasPrefix("jester.") })
}
