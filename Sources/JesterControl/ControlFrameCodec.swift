// SPDX-License-Identifier: Apache-2.0

/// Frames control messages: a 4-byte big-endian length, then the JSON of a `ControlEnvelope`.
///
/// Pure: the master and workers feed it bytes from their NIO channels, jesterctl from a blocking socket. The JSON
/// is `ControlJSONEncoder`'s and `ControlJSONDecoder`'s, the same text Foundation's codec wrote before them.
public struct ControlFrameCodec: Sendable {
    /// Why bytes could not be read as a control message.
    public enum DecodingError: Error, Equatable, CustomStringConvertible {
        case frameTooLarge(Int)
        case versionMismatch(Int)
        case malformed(String)

        public var description: String {
            switch self {
            case .frameTooLarge(let size): return "control frame of \(size) bytes exceeds the limit"
            case .versionMismatch(let version):
                return "control protocol version \(version) is not supported "
                    + "(this side speaks \(ControlProtocol.version))"
            case .malformed(let reason): return "malformed control message: \(reason)"
            }
        }
    }

    private var buffer: [UInt8] = []

    public init() {}

    /// Bytes received but not yet part of a complete frame (handed across a binary upgrade).
    public var bufferedBytes: [UInt8] { buffer }

    /// The bytes of one frame carrying `message`, with the correlation id of the request it answers (or its own).
    public static func encode(_ message: ControlMessage, id: UInt64? = nil) -> [UInt8] {
        // Only a NaN or infinite number can fail, and no message carries one the master or a worker computed
        // from a division by zero: an empty frame would be refused by the peer as malformed.
        let payload = (try? ControlJSONEncoder().encode(ControlEnvelope(message, id: id))) ?? []
        let length = UInt32(payload.count)
        var frame: [UInt8] = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
            UInt8(length & 0xFF)]
        frame.reserveCapacity(4 + payload.count)
        frame.append(contentsOf: payload)
        return frame
    }

    /// Adds received bytes.
    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message, nil when more bytes are needed.
    public mutating func next() throws(DecodingError) -> ControlMessage? {
        try nextEnvelope()?.message
    }

    /// The next complete frame with its correlation id, nil when more bytes are needed.
    public mutating func nextEnvelope() throws(DecodingError) -> ControlEnvelope? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        guard length <= ControlProtocol.maxFrameSize else { throw .frameTooLarge(length) }
        guard buffer.count >= 4 + length else { return nil }
        let payload = Array(buffer[4..<(4 + length)])
        buffer.removeFirst(4 + length)
        let tree: JSONTree
        do {
            tree = try JSONTree.parse(payload)
        } catch {
            throw .malformed(error.description)
        }
        // The version first: a peer of another major version may say anything after it.
        if case .object(let members) = tree, case .number(let text)? = members["version"], let version = Int(text),
            version != ControlProtocol.version
        {
            throw .versionMismatch(version)
        }
        let envelope: ControlEnvelope
        do {
            envelope = try ControlJSONDecoder().decode(ControlEnvelope.self, from: tree)
        } catch {
            throw .malformed(String(describing: error))
        }
        guard envelope.version == ControlProtocol.version else { throw .versionMismatch(envelope.version) }
        return envelope
    }
}
