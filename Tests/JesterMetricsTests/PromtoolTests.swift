// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterMetrics
import Testing

/// Prometheus's own linter on our exposition: `promtool check metrics` (Debian's `prometheus` package, which
/// Packaging/setup.sh --test installs) parses the text format and checks naming, units, help and types.
@Suite struct PromtoolTests {
    private static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    private static let missing: Comment = "promtool is missing: Packaging/setup.sh --test installs prometheus"

    @Test(.enabled(if: promtool != nil, missing))
    func promtoolFindsNothingToSay() throws {
        let (registry, snapshot) = try populatedExposition()
        let text = MetricsExposition.render(registry, snapshot, format: .prometheusText)
        let (status, output) = try Self.check(text)
        #expect(status == 0 && output.isEmpty, "promtool: \(output)")
    }

    @Test(.enabled(if: promtool != nil, missing))
    func promtoolWouldCatchABadName() throws {
        // The check can fail: a counter without _total and a unit that is not a base unit are reported.
        let bad = "# HELP jester_bad_requests Bad.\n# TYPE jester_bad_requests counter\njester_bad_requests 1\n"
            + "# HELP jester_bad_milliseconds Bad.\n# TYPE jester_bad_milliseconds gauge\njester_bad_milliseconds 1\n"
        let (status, output) = try Self.check(bad)
        #expect(status != 0 && output.contains("_total") && output.contains("base unit"), "promtool: \(output)")
    }

    private static func check(_ text: String) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool!)
        process.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
