// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// A compression library's failure: which coding, what went wrong, what the library said, and where in Jester it
/// was noticed.
///
/// Encoders fail only when a library cannot start (memory) or reports an impossible state; decoders also fail on
/// the peer's bytes (corrupt, cut short, followed by garbage) and on the decoded-size limit, and the adapter answers
/// those differently (400 against 413), so `code` says which.
public struct CompressionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Equatable {
        /// The library could not set up a stream (out of memory, a parameter it refused).
        case setup
        /// The coded input is not valid for its coding.
        case corruptInput = "corrupt_input"
        /// The coded input ended before its coding's end.
        case truncatedInput = "truncated_input"
        /// Bytes follow the end of the coded stream.
        case trailingData = "trailing_data"
        /// Decoding would give more than the decoder's limit.
        case limitExceeded = "limit_exceeded"
        /// The library reported a state the wrapper does not expect.
        case library
    }

    public var code: Code
    public var coding: ContentCoding
    /// What the library said ("incorrect header check"), or what the wrapper saw.
    public var message: String
    /// The wrapper's file and line that noticed it.
    public var location: String

    public init(
        _ code: Code, coding: ContentCoding, _ message: String, fileID: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.coding = coding
        self.message = message
        location = "\(fileID):\(line)"
    }

    /// Whether the peer's bytes are at fault (a 400 for a request body), as against Jester's limit or itself.
    public var isInputError: Bool { code == .corruptInput || code == .truncatedInput || code == .trailingData }

    public var description: String { "\(coding.token) \(code.rawValue): \(message)" }
}
