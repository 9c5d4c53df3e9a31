// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// A response filter: decides, as an upstream's response head arrives, what changes on its way to the client (its
/// fields, and its body piece by piece): compression now, and the post-response hook of Wasm policies next. Like a
/// request filter it is compiled once per configuration and worker and shared by the routes it is attached to; its
/// per-response state lives in the `ResponseBodyTransform` it returns. Loop-confined.
///
/// It runs in the exchange, once per response, whatever protocol the client speaks: the adapters only frame what
/// it decided (a body whose length changes goes chunked to an HTTP/1.1 client, without `content-length` to an
/// HTTP/2 one). A route without response filters pays nothing (the adapters check one array).
protocol ResponseFilter: AnyObject {
    /// The name the configuration gives it (logs, metrics).
    var name: String { get }
    /// Looks at the upstream's final response head (`response` over `bytes`) to the request `request` (over
    /// `requestBytes`), and adds its changes to `edit`. Filters run in route order; each sees the head as the
    /// upstream sent it and what earlier filters put into `edit`.
    func responseHead(
        _ response: HTTPHead, _ bytes: UnsafeRawBufferPointer, request: HTTPHead, _ requestBytes: UnsafeRawBufferPointer,
        edit: inout ResponseEdit)
}

/// The response filters of one route, in order. (Loop-confined like the worker's other per-configuration state;
/// hence `@unchecked Sendable`.)
struct ResponseFilterChain: @unchecked Sendable {
    let filters: [any ResponseFilter]

    static let empty = ResponseFilterChain(filters: [])

    var isEmpty: Bool { filters.isEmpty }
}

/// What the response filters change in one response: fields of the upstream's head left out, fields added, and
/// a transformation of the body. Protocol-free, like `LocalResponse`.
struct ResponseEdit {
    /// Indices (in `HTTPHead.fields`) of the upstream's fields left out.
    var droppedFields: [Int] = []
    /// Fields added (after the upstream's and the route's own edits).
    var addedFields: [LocalResponse.Field] = []
    /// The body's transformation; with one, the response's length is unknown until it ends, so no
    /// `Content-Length` goes to the client.
    var body: (any ResponseBodyTransform)?
    /// No `Content-Length` goes to the client even without a transformation here (a HEAD answered with the
    /// fields a coded GET would have).
    var removesLength = false

    var isEmpty: Bool { droppedFields.isEmpty && addedFields.isEmpty && body == nil && !removesLength }

    /// Whether the upstream's field at `index` is left out.
    func drops(_ index: Int) -> Bool {
        !droppedFields.isEmpty && droppedFields.contains(index)
    }
}

/// Transforms one response's body on its way to the client, with bounded memory: each piece goes through as it
/// comes (what the transformation emits for it, possibly nothing yet), and the end flushes what it held back.
protocol ResponseBodyTransform: AnyObject {
    /// What to send for `piece` (nil: nothing yet).
    func transform(_ piece: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer?
    /// The upstream paused (a read cycle ended): what the transformation holds back so far, so a streamed
    /// response reaches the client as it comes (nil: nothing).
    func flush(allocator: ByteBufferAllocator) -> ByteBuffer?
    /// The body ended: what is left to send (nil: nothing).
    func finish(allocator: ByteBufferAllocator) -> ByteBuffer?
}

extension RequestExchange {
    /// Whether the current response has a response phase: the route has response filters, or post-response
    /// policies changed its fields (adapters skip `decideResponse` otherwise).
    var hasResponsePhase: Bool {
        route?.responseFilters.isEmpty == false || policyState?.responseEdit != nil
    }

    /// The response phase for an upstream's final head: what post-response policies changed in its fields, then
    /// the route's response filters, decide (`responseEdit`), once per response; nil when nothing changes.
    mutating func decideResponse(_ response: HTTPHead, _ bytes: UnsafeRawBufferPointer) {
        responseEdit = nil
        guard let route, let headBytes else { return }
        var edit = policyState?.responseEdit ?? ResponseEdit()
        policyState?.responseEdit = nil
        headBytes.withUnsafeReadableBytes { request in
            for filter in route.responseFilters.filters {
                filter.responseHead(response, bytes, request: head, request, edit: &edit)
            }
        }
        if !edit.isEmpty { responseEdit = edit }
    }
}
