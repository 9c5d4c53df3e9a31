// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the configuration loader (JesterConfig over TOMLKit), built by Tests/Fuzz/run.sh.
//
// Any text must load or fail with located diagnostics; never crash, and every diagnostic must point inside the
// text (line and column within its bounds).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // Count LF bytes: Swift's Character view treats "\r\n" as one character and would count too few lines.
    let lines = text.utf8.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
    do {
        _ = try ConfigLoader(environment: ["X": "1"]).load(text: text, file: "fuzz.toml")
    } catch {
        for diagnostic in error.diagnostics where diagnostic.location.file == "fuzz.toml" {
            precondition(diagnostic.location.line >= 1 && diagnostic.location.line <= max(lines, 1) + 1,
                "diagnostic outside the text: \(diagnostic)")
        }
    }
    return 0
}
