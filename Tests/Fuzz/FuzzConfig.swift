// libFuzzer target: the configuration loader (JesterConfig over TOMLKit), built by Tests/Fuzz/run.sh.
//
// Any text must load or fail with located diagnostics; never crash, and every diagnostic must point inside the
// text (line and column within its bounds).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
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
