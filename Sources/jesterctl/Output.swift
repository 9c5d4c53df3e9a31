// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterControl

/// Writes `message` to standard error and exits with `status` (see `ControlExitStatus` and jesterctl(8)).
func fail(_ message: String, status: ControlExitStatus = .unreachable) -> Never {
    writeOut(message + "\n", to: STDERR_FILENO)
    exit(status.rawValue)
}

/// Ends jesterctl with `status`, after what `print` buffered.
func finish(_ status: ControlExitStatus) -> Never {
    fflush(nil)
    exit(status.rawValue)
}

/// Writes `text` to `descriptor` now, after whatever `print` buffered (progress is read as it comes).
func writeOut(_ text: String, to descriptor: Int32) {
    fflush(nil)
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}

/// One compact JSON object per line, unbuffered: for streams of progress that a program reads as they come.
func printJSONLine<T: Encodable>(_ value: T) {
    let encoder = ControlJSONEncoder(options: [.sortedKeys, .snakeCaseKeys])
    writeOut(String(decoding: (try? encoder.encode(value)) ?? [], as: UTF8.self) + "\n", to: STDOUT_FILENO)
}

/// Pretty JSON with snake_case keys, like the configuration and the logs (the wire format keeps Swift's names).
func printJSON<T: Encodable>(_ value: T) {
    let encoder = ControlJSONEncoder(options: [.prettyPrinted, .sortedKeys, .snakeCaseKeys])
    print(String(decoding: (try? encoder.encode(value)) ?? [], as: UTF8.self))
}

/// Rows of columns, each column as wide as its widest cell.
func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { $1 + String(repeating: " ", count: max(0, widths[$0] - $1.count)) }
        print(cells.joined(separator: "  "))
    }
}

/// `value` with one decimal ("12.3"), as `String(format: "%.1f")` prints it, without Foundation's formatter.
func oneDecimal(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
}

/// Seconds since the epoch (what the master's times are in), without Foundation's `Date`.
func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
