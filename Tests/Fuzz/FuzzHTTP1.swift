// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the HTTP/1 head parser and body decoders (JesterCore), built by Tests/Fuzz/run.sh.
//
// Beyond "does not crash", it checks the parser's invariants: every range it reports lies inside the head,
// framing is never ambiguous (Content-Length and chunked at once), and feeding the bytes in two pieces gives the
// same answer as feeding them at once (the resumable end search must not depend on how reads split a head).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP1(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let split = Int(input[0]) % size
    let bytes = UnsafeRawBufferPointer(rebasing: input[1...])
    for isRequest in [true, false] {
        let whole = parse(bytes, isRequest: isRequest, splitAt: nil)
        let pieces = parse(bytes, isRequest: isRequest, splitAt: min(split, bytes.count))
        precondition(whole == pieces, "split-dependent result: \(whole) vs \(pieces)")
    }
    var reader = BodyReader(.chunked)
    var index = 0
    do {
        while let range = try reader.next(bytes, &index) {
            precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count)
        }
    } catch {}
    precondition(index <= bytes.count)
    return 0
}

private enum Outcome: Equatable {
    case incomplete
    case failed(HTTPParseError)
    case parsed(length: Int, error: HTTPParseError?)
}

private func parse(_ bytes: UnsafeRawBufferPointer, isRequest: Bool, splitAt: Int?) -> Outcome {
    var parser = HTTPHeadParser(limits: .init(maxHeadSize: 4096, maxURILength: 1024, maxFieldCount: 50))
    var progress = HTTPHeadParser.Progress.needMoreBytes
    if let splitAt {
        progress = parser.findEnd(UnsafeRawBufferPointer(rebasing: bytes[0..<splitAt]), isRequest: isRequest)
        if case .needMoreBytes = progress { progress = parser.findEnd(bytes, isRequest: isRequest) }
    } else {
        progress = parser.findEnd(bytes, isRequest: isRequest)
    }
    switch progress {
    case .needMoreBytes:
        return .incomplete
    case .failed(let error):
        return .failed(error)
    case .complete(let length):
        precondition(length <= bytes.count)
        let headBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
        var head = HTTPHead()
        let error = isRequest ? parser.parseRequest(headBytes, into: &head) : parser.parseResponse(headBytes, into: &head)
        if error == nil {
            precondition(!(head.contentLength != nil && head.isChunked), "ambiguous framing accepted")
            for field in head.fields {
                precondition(field.line.upperBound <= length && field.name.upperBound <= length)
                precondition(field.value.lowerBound >= field.name.upperBound && field.value.upperBound <= field.line.upperBound)
            }
            if isRequest {
                precondition(head.method.upperBound <= length && head.target.upperBound <= length)
                precondition(head.path.upperBound <= head.target.upperBound)
                precondition(head.hostField.map { $0 < head.fields.count } ?? true)
            }
        }
        return .parsed(length: length, error: error)
    }
}
