// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import Testing

// The control protocol's own JSON codec, held to Foundation's: what one writes the other reads, message for
// message, so a peer of an earlier release (which used Foundation's codec) and this one understand each other.

/// At least one of every kind of control message, with optional members both set and absent.
private let everyMessage: [ControlMessage] = {
    var assignment = WorkerAssignment(
        slot: 2, generation: 7, configuration: Array(#"{"server":{"workers":2}}"#.utf8), listenerNames: ["main", "tls"],
        userID: 65534, groupID: nil)
    assignment.ticketKeys = [Base64Bytes((0..<80).map { UInt8($0) }), Base64Bytes([0xFF, 0xFE])]
    assignment.resolvedAddresses = ["app.internal": "10.0.0.7"]
    assignment.keySets = [FilterKeySet(filter: "auth", url: "https://idp.example/jwks", jwks: Array("{}".utf8))]
    var status = StatusReport(
        pid: 42, version: "0.1.0", startedAt: 1_765_000_000.25, configFile: "/etc/jester/jester.toml",
        configHash: "83f1314c778a3fdf", generation: 3, state: "running",
        workers: [WorkerStatus(pid: 43, slot: 0, generation: 3, state: "ready", connections: 1, requests: 9,
            rssBytes: 10_485_760, restarts: 0, configHash: "83f1", startedAt: 1_765_000_001, drainDeadline: nil)],
        binaryReplaced: true, lastFailedReload: FailedReload(at: 1e9, kind: "reload", errors: ["a.toml:1:2: error: x"]),
        listeners: [ListenerStatus(name: "main", address: "127.0.0.1:8080", protocol: "http", tls: false)])
    status.workers.append(WorkerStatus(pid: 44, slot: 1, generation: 2, state: "draining", connections: 0,
        requests: 0, rssBytes: 0, restarts: 3))
    let state = TargetState(upstream: "app", target: "10.0.0.7:80", health: "healthy", admin: "enabled")
    return [
        .status, .reload, .reloadAndWait, .drain(timeoutSeconds: 2.5), .drain(timeoutSeconds: nil),
        .stop(fast: true, wait: true), .stop(fast: false), .upgrade, .upstreams,
        .setTargetAdmin(upstream: nil, target: "10.0.0.7:80", state: "drain"), .reopenLogs,
        .awaitUpgrade(untilDrained: false), .metrics(accept: "text/plain"), .metrics(accept: nil),
        .tap(TapFilter(route: "api", status: "5xx")), .cacheStatus, .cachePurge(.prefix("https://a.example/")),
        .statusReport(status), .metricsExposition(contentType: "text/plain; version=0.0.4", body: "a 1\n# \"q\"\n"),
        .upstreamsReport([TargetReport(state: state, active: 1, requests: 2, failures: 0, ejectedBy: 0,
            latencyMilliseconds: 12.75, failOpen: true)]),
        .cacheReport(CacheStatusReport(bytesUsed: 1 << 40, byteBudget: 1 << 41, entries: 3, hits: 2, misses: 1,
            stores: 1, evictions: 0, collapsed: 0)),
        .cachePurged(CachePurgeResult(removed: 0)),
        .reloadResult(ReloadResult(success: false, generation: 3, configHash: "", errors: ["é \u{1F600} \t\u{01}"])),
        .progress(ProgressReport(phase: "draining", connections: 5, workers: 2, generation: 4)),
        .done(success: true, message: "ok"), .failure(message: "no", reason: .notFound), .failure(message: "old"),
        .assignment(assignment), .beginDrain(timeoutSeconds: 30), .targetStates([state]),
        .ticketKeys([Base64Bytes([1, 2, 3])]), .resolvedAddresses([:]), .keySet(assignment.keySets![0]),
        .tapFilters([TapFilter(), TapFilter(upstream: "app")]), .workerReady(pid: -1),
        .workerStats(WorkerStats(connections: 1, targets: [TargetStats(upstream: "app", target: "t", active: 0,
            requests: Int.max, failures: Int.min, ejected: true, latencyMilliseconds: 0.1)], rssBytes: 5)),
        .workerDraining(connections: 3), .workerDrained(cutRequests: 2), .workerDrained(),
        .accessLogReopened(sequence: UInt64.max),
        .tapRecords([TapRecord(route: "r", upstream: "u", status: 502, line: #"{"type":"access"}"#)], dropped: 1),
    ]
}()

@Test func foundationReadsEveryMessageThisCodecWrites() throws {
    for message in everyMessage {
        let frame = ControlFrameCodec.encode(message, id: UInt64.max)
        let envelope = try JSONDecoder().decode(ControlEnvelope.self, from: Data(frame.dropFirst(4)))
        #expect(envelope.message == message && envelope.id == UInt64.max, "\(message)")
    }
}

@Test func thisCodecReadsEveryMessageFoundationWrites() throws {
    for message in everyMessage {
        let payload = Array(try JSONEncoder().encode(ControlEnvelope(message, id: 9)))
        var codec = ControlFrameCodec()
        codec.append([0, UInt8(payload.count >> 16), UInt8(payload.count >> 8 & 0xFF), UInt8(payload.count & 0xFF)])
        codec.append(payload)
        #expect(try codec.nextEnvelope() == ControlEnvelope(message, id: 9), "\(message)")
    }
}

@Test func theWireFormMatchesFoundationsMemberForMember() throws {
    for message in everyMessage {
        let ours = Data(try ControlJSONEncoder().encode(ControlEnvelope(message)))
        let theirs = try JSONEncoder().encode(ControlEnvelope(message))
        let normalized = { (data: Data) in
            try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: data), options: .sortedKeys)
        }
        #expect(try normalized(ours) == normalized(theirs), "\(String(decoding: ours, as: UTF8.self))")
    }
}

@Test func jesterctlsOutputOptionsMatchFoundations() throws {
    let report = TargetReport(
        state: TargetState(upstream: "app", target: "10.0.0.7:80", health: "unknown", admin: "drain"), active: 0,
        requests: 1, failures: 0, ejectedBy: 2, latencyMilliseconds: 1.5, failOpen: nil)
    let ours = try ControlJSONEncoder(options: [.sortedKeys, .prettyPrinted, .snakeCaseKeys]).encode([report])
    let foundation = JSONEncoder()
    foundation.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    foundation.keyEncodingStrategy = .convertToSnakeCase
    #expect(String(decoding: ours, as: UTF8.self) == String(decoding: try foundation.encode([report]), as: UTF8.self))
    // Foundation's convertToSnakeCase, word for word (an acronym is one word; digits and `_` stay).
    let expected = ["configHash": "config_hash", "rssURLBytes": "rss_url_bytes", "_0": "_0", "URL": "url",
                    "ipv6Address": "ipv6_address", "a": "a", "hitRatio": "hit_ratio"]
    for (key, snake) in expected { #expect(ControlJSONEncoder.snakeCase(key) == snake, "\(key)") }
}

@Test func numbersKeepTheirExactValues() throws {
    let decoder = ControlJSONDecoder()
    #expect(try decoder.decode(UInt64.self, from: Array("18446744073709551615".utf8)) == UInt64.max)
    #expect(try decoder.decode(Int.self, from: Array("-9223372036854775808".utf8)) == Int.min)
    #expect(try decoder.decode(Int.self, from: Array("1e3".utf8)) == 1000)
    #expect(try decoder.decode(Double.self, from: Array("5".utf8)) == 5)
    #expect(try decoder.decode(Double.self, from: Array("-1.5E-7".utf8)) == -1.5e-7)
    for (text, type) in [("1.5", Int.self as any Decodable.Type), ("18446744073709551616", UInt64.self),
                         ("-1", UInt32.self), ("1e999", Double.self), ("\"1\"", Int.self), ("true", Int.self)] {
        #expect(throws: DecodingError.self, "\(text)") { try decoder.decode(type, from: Array(text.utf8)) }
    }
    let encoder = ControlJSONEncoder()
    #expect(try encoder.encode([1.0, 0.1, 1e20, -0.0, 5e-324]) == Array("[1,0.1,1e+20,-0,5e-324]".utf8))
    #expect(throws: EncodingError.self) { try encoder.encode([Double.nan]) }
    #expect(throws: EncodingError.self) { try encoder.encode(WorkerStats(targets: [TargetStats(upstream: "", target: "",
        active: 0, requests: 0, failures: 0, ejected: false, latencyMilliseconds: .infinity)])) }
}

@Test func stringsRoundTripEveryCharacter() throws {
    let text = "quote \" backslash \\ slash / controls \u{00}\u{1F}\n\r\t\u{08}\u{0C} é 漢 \u{1F600} \u{7F}"
    let encoded = try ControlJSONEncoder().encode([text])
    #expect(try ControlJSONDecoder().decode([String].self, from: encoded) == [text])
    #expect(try JSONDecoder().decode([String].self, from: Data(encoded)) == [text])
    let escaped = #"["\u00e9\ud83d\ude00\/\"\\\b\f\n\r\t"]"#
    #expect(try ControlJSONDecoder().decode([String].self, from: Array(escaped.utf8))
        == ["é\u{1F600}/\"\\\u{08}\u{0C}\n\r\t"])
}

@Test func malformedJSONIsRefusedWithWhere() throws {
    let refused = [
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[01]", "[1.]", "[.5]", "[1e]", "[+1]",
        "[-]", "[NaN]", "[Infinity]", "[tru]", "[nulls]", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"",
        "\"\\ud800\\u0041\"", "\"a\u{01}\"", "\"unterminated", "[1] [2]", "{\"a\":1,\"a\":2}", "// comment\n1",
        "[1]\u{00}", "'a'",
    ]
    for text in refused {
        #expect(throws: JSONTree.SyntaxError.self, "\(text)") { try JSONTree.parse(Array(text.utf8)) }
    }
    #expect(throws: JSONTree.SyntaxError.self) { try JSONTree.parse([0x22, 0xC3, 0x28, 0x22]) }  // bad UTF-8
    #expect(throws: JSONTree.SyntaxError.self) { try JSONTree.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }  // surrogate
    let deep = Array(repeating: UInt8(ascii: "["), count: JSONTree.maxDepth + 1)
        + Array(repeating: UInt8(ascii: "]"), count: JSONTree.maxDepth + 1)
    #expect(throws: JSONTree.SyntaxError(offset: JSONTree.maxDepth, reason: "nested too deeply")) {
        try JSONTree.parse(deep)
    }
    let deepest = Array(deep.dropFirst().dropLast())
    #expect((try? JSONTree.parse(deepest)) != nil)
    #expect(throws: JSONTree.SyntaxError(offset: 4, reason: "a number with a leading zero")) {
        try JSONTree.parse(Array(" [1,01]".utf8))
    }
    #expect(try JSONTree.parse(Array(" \t\r\n{ \"a\" : [ true , false , null , -0.5e+2 , \"\" ] } \n".utf8))
        == .object(["a": .array([.bool(true), .bool(false), .null, .number("-0.5e+2"), .string("")])]))
}

@Test func framesWithBadJSONOrShapesAreMalformedNotCrashes() {
    for json in [#"{"version":1}"#, #"{"version":1,"message":{}}"#, #"{"version":1,"message":{"nope":{}}}"#,
                 #"{"version":1,"message":{"status":{},"reload":{}}}"#, #"{"version":"1","message":{"status":{}}}"#,
                 #"{"version":1,"message":{"drain":{"timeoutSeconds":"x"}}}"#, #"[]"#, #"{"version":1,"message":"#,
                 #"{"version":1,"id":-1,"message":{"status":{}}}"#,
                 #"{"version":1,"message":{"ticketKeys":{"_0":["AA=="," AA="]}}}"#] {
        var codec = ControlFrameCodec()
        let payload = Array(json.utf8)
        codec.append([0, 0, 0, UInt8(payload.count)] + payload)
        #expect(throws: ControlFrameCodec.DecodingError.self, "\(json)") { try codec.next() }
    }
    // The version is read before the message: another major version is named, whatever its message says.
    var codec = ControlFrameCodec()
    let payload = Array(#"{"version":2,"message":{"somethingNew":{}}}"#.utf8)
    codec.append([0, 0, 0, UInt8(payload.count)] + payload)
    #expect(throws: ControlFrameCodec.DecodingError.versionMismatch(2)) { try codec.next() }
}

@Test func base64IsFoundationsAndStrict() {
    for length in 0..<20 {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 250) }
        let text = Base64Bytes.encode(bytes)
        #expect(text == Data(bytes).base64EncodedString())
        #expect(Base64Bytes.decode(text) == bytes)
    }
    for text in ["A", "AA", "AA=", "AAA", "A===", "=AAA", "AA=A", "AA==AAAA", "AB==", "AAB=", "AA AA", "AA-_",
                 "AAAA\n"] {
        // (Foundation lets some of these through: `AB==` and `AA=A`. A peer never writes them.)
        #expect(Base64Bytes.decode(text) == nil, "\(text)")
    }
}
