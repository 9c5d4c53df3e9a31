// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the control-protocol decoder (JesterControl), built by Tests/Fuzz/run.sh.
//
// Arbitrary bytes from a peer on the control socket must never crash the master: every input either decodes
// or is refused, and whatever decodes re-encodes to a frame that decodes to the same message.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var decoder = ControlFrameCodec()
    decoder.append(Array(UnsafeBufferPointer(start: data, count: size)))
    while true {
        let message: ControlMessage?
        do {
            message = try decoder.next()
        } catch {
            return 0
        }
        guard let message else { return 0 }
        var again = ControlFrameCodec()
        again.append(ControlFrameCodec.encode(message))
        precondition((try? again.next()) == message, "re-encoded frame decodes differently")
    }
}
