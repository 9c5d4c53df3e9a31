// SPDX-License-Identifier: Apache-2.0
import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line: `time`, `level`, `message`, the logger's label as
/// `component`, then metadata. journald and log shippers read it without a parser of Jester's own.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let writer: LogWriter

    public init(label: String, level: Logger.Level = .info, writer: LogWriter = .standardError) {
        self.label = label
        self.logLevel = level
        self.writer = writer
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = JSONLine()
        line.field("time", JSONLine.timestamp())
        line.field("level", event.level.rawValue)
        line.field("component", label)
        line.field("message", "\(event.message)")
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line.field(key, value)
        }
        writer.write(line.finish())
    }

    /// Installs the handler as swift-log's backend for the whole process.
    public static func bootstrap(level: Logger.Level, writer: LogWriter = .standardError) {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level, writer: writer) }
    }
}

/// Builds one JSON object into bytes, escaping strings per RFC 8259.
public struct JSONLine {
    private var bytes: [UInt8] = [0x7B]
    private var first = true

    public init() {
        bytes.reserveCapacity(256)
    }

    private mutating func key(_ name: String) {
        if !first { bytes.append(0x2C) }
        first = false
        appendString(name)
        bytes.append(0x3A)
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        appendString(value)
    }

    public mutating func field(_ name: String, _ value: Int) {
        key(name)
        bytes += Array(String(value).utf8)
    }

    public mutating func field(_ name: String, _ value: Double) {
        key(name)
        bytes += Array(String(format: "%.3f", value).utf8)
    }

    public mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bytes += Array((value ? "true" : "false").utf8)
    }

    /// Adds a swift-log metadata value as the JSON it stands for, so log readers (jq, journald exporters, log
    /// shippers) get numbers they can compare and lists they can index instead of Swift's description of them:
    /// integers and finite floating-point numbers as JSON numbers, booleans as `true`/`false`, `.array` as a JSON
    /// array and `.dictionary` as an object (keys sorted, so equal maps make equal lines), each nested value
    /// rendered the same way. Anything else is its description as a string.
    public mutating func field(_ name: String, _ value: Logger.MetadataValue) {
        key(name)
        appendValue(value)
    }

    private mutating func appendValue(_ value: Logger.MetadataValue) {
        switch value {
        case .string(let text): appendString(text)
        case .stringConvertible(let convertible): appendScalar(convertible)
        case .array(let values):
            bytes.append(0x5B)
            for (index, element) in values.enumerated() {
                if index > 0 { bytes.append(0x2C) }
                appendValue(element)
            }
            bytes.append(0x5D)
        case .dictionary(let values):
            bytes.append(0x7B)
            for (index, (name, element)) in values.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { bytes.append(0x2C) }
                appendString(name)
                bytes.append(0x3A)
                appendValue(element)
            }
            bytes.append(0x7D)
        }
    }

    /// A `.stringConvertible` value: numbers and booleans as themselves, anything else as its description.
    private mutating func appendScalar(_ value: any CustomStringConvertible & Sendable) {
        switch value {
        case let flag as Bool: bytes += Array((flag ? "true" : "false").utf8)
        case let integer as any BinaryInteger: bytes += Array(String(describing: integer).utf8)
        case let number as any BinaryFloatingPoint:
            let double = Double(number)
            // JSON has no NaN or infinity (RFC 8259 §6); those stay readable as strings.
            guard double.isFinite else {
                appendString(double.description)
                return
            }
            // Swift's shortest round-trip form is valid JSON: 0.25, 3.0, 1e+20, 1e-05.
            bytes += Array(double.description.utf8)
        default: appendString(value.description)
        }
    }

    /// Adds a string value given as raw bytes (a request id straight from a request head).
    public mutating func field(_ name: String, bytes value: UnsafeRawBufferPointer) {
        key(name)
        appendString(value)
    }

    public mutating func finish() -> [UInt8] {
        bytes.append(0x7D)
        return bytes
    }

    private mutating func appendString(_ text: String) {
        var text = text
        text.withUTF8 { appendString(UnsafeRawBufferPointer($0)) }
    }

    private mutating func appendString(_ value: UnsafeRawBufferPointer) {
        bytes.append(0x22)
        for byte in value {
            switch byte {
            case 0x22: bytes += [0x5C, 0x22]
            case 0x5C: bytes += [0x5C, 0x5C]
            case 0x0A: bytes += [0x5C, 0x6E]
            case 0x0D: bytes += [0x5C, 0x72]
            case 0x09: bytes += [0x5C, 0x74]
            case 0..<0x20, 0x7F:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes += [0x5C, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: bytes.append(byte)
            }
        }
        bytes.append(0x22)
    }

    /// The current time as RFC 3339 with milliseconds, UTC.
    public static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
    }
}
