// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

/// The HTTP/1.x keep-alive and pipelining rules, without a connection.

@Test func anHTTP11RequestKeepsTheConnectionAndSaysNothing() {
    var machine = HTTP1KeepAlive(maxRequests: 0)
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(machine.responseHead(draining: false) == .none)
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: false)
        == .awaitNext(idle: .keepaliveTimeout, processBuffered: false))
}

@Test func anHTTP10ClientThatAskedIsToldKeepAlive() {
    var machine = HTTP1KeepAlive(maxRequests: 0)
    machine.requestStarted(persistent: true, isHTTP10: true, draining: false)
    #expect(machine.responseHead(draining: false) == .keepAlive)
    machine.requestStarted(persistent: false, isHTTP10: true, draining: false)
    #expect(machine.responseHead(draining: false) == .close)
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: false) == .close)
}

@Test func connectionCloseAndTheRequestLimitEndTheConnection() {
    var machine = HTTP1KeepAlive(maxRequests: 3)
    for _ in 0..<2 {
        machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
        #expect(machine.responseHead(draining: false) == .none)
        _ = machine.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: false)
    }
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(machine.responseHead(draining: false) == .close)
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: false) == .close)
    #expect(machine.requestsStarted == 3)
}

@Test func anAmbiguousStreamEndsAfterTheExchange() {
    // An unread body, a response delimited by closing, chunks an HTTP/1.0 client cannot read.
    var machine = HTTP1KeepAlive(maxRequests: 0)
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    machine.endAfterExchange()
    #expect(machine.responseHead(draining: false) == .close)
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: false) == .close)
    // A request body cut short, known only at the end.
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(machine.exchangeFinished(requestComplete: false, bufferedBytes: 0, draining: false) == .close)
}

@Test func aPipelinedRequestGoesAsSoonAsTheExchangeEnds() {
    var machine = HTTP1KeepAlive(maxRequests: 0, readAheadLimit: 100)
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(machine.readsAhead(bufferedBytes: 99))
    #expect(!machine.readsAhead(bufferedBytes: 100))
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 40, draining: false)
        == .awaitNext(idle: .keepaliveTimeout, processBuffered: true))
}

@Test func aDrainEndsABusyConnectionAtItsResponseAndGivesAnIdleOneAGrace() {
    var machine = HTTP1KeepAlive(maxRequests: 0)
    #expect(machine.drainStarted(idle: true) == .drainGrace)
    #expect(machine.drainStarted(idle: false) == nil)
    // Draining began during the exchange, before the head went out: the response says close.
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(machine.responseHead(draining: true) == .close)
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: true) == .close)
    // Draining began after a head promised keep-alive: the promise holds, for the drain's grace.
    var promised = HTTP1KeepAlive(maxRequests: 0)
    promised.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(promised.responseHead(draining: false) == .none)
    #expect(promised.exchangeFinished(requestComplete: true, bufferedBytes: 0, draining: true)
        == .awaitNext(idle: .drainGrace, processBuffered: false))
    // A request that arrives in a draining worker is answered with close.
    promised.requestStarted(persistent: true, isHTTP10: false, draining: true)
    #expect(promised.responseHead(draining: true) == .close)
}

@Test func afterTheClientClosesItsSideNoFurtherRequestKeepsTheConnection() {
    var machine = HTTP1KeepAlive(maxRequests: 0)
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    machine.clientInputClosed()
    #expect(machine.responseHead(draining: false) == .close)
    // A pipelined request read before the FIN is still answered, and closes the connection too.
    machine.requestStarted(persistent: true, isHTTP10: false, draining: false)
    #expect(machine.responseHead(draining: false) == .close)
    #expect(machine.exchangeFinished(requestComplete: true, bufferedBytes: 10, draining: false) == .close)
}
