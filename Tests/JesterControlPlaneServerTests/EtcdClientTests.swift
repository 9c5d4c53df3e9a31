// SPDX-License-Identifier: Apache-2.0
@testable import JesterControlPlaneServer
import Testing

/// The pieces of etcd's JSON gateway client that need no etcd (the store itself is tested live, against a real
/// etcd, in Tests/Live/test_control_plane_replicas.py).

@Test func aPrefixRangeEndsAtThePrefixWithItsLastByteIncremented() {
    #expect(EtcdClient.prefixEnd("/jester/versions/") == "/jester/versions0")
    #expect(EtcdClient.prefixEnd("a") == "b")
}

@Test func chunkedAnswersAreJoinedAndCutOnesRefused() {
    let body = Array("4\r\n{\"a\"\r\n3;ext=1\r\n:1}\r\n0\r\n\r\n".utf8)
    #expect(EtcdClient.dechunk(body) == Array("{\"a\":1}".utf8))
    #expect(EtcdClient.dechunk(Array("4\r\n{\"a\"\r\n".utf8)) == nil)
    #expect(EtcdClient.dechunk(Array("zz\r\nabc\r\n0\r\n\r\n".utf8)) == nil)
    #expect(EtcdClient.dechunk(Array("10\r\nshort\r\n".utf8)) == nil)
}

@Test func theHeaderEndAndStatusAreFound() throws {
    let answer = Array("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".utf8)
    let head = try EtcdClient.head(of: answer)
    #expect(head?.bodyStart == 45)  // after the head's CRLF CRLF
    #expect(head?.status == 404 && head?.chunked == false)
    #expect(try EtcdClient.head(of: Array("HTTP/1.1 200 OK\r\n".utf8)) == nil)
    #expect(try EtcdClient.head(of: Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))?.chunked == true)
}

@Test func endpointsAreHTTPURLsWithAPort() throws {
    let client = try EtcdClient(endpoints: ["http://127.0.0.1:2379", "http://[::1]:2380/"])
    #expect(client.endpoints.map(\.description) == ["http://127.0.0.1:2379", "http://[::1]:2380"])
    for wrong in ["127.0.0.1:2379", "https://127.0.0.1:2379", "http://127.0.0.1", "http://:2379", "http://h:0"] {
        #expect(throws: SnapshotStoreError.self) { _ = try EtcdClient(endpoints: [wrong]) }
    }
    #expect(throws: SnapshotStoreError.self) { _ = try EtcdClient(endpoints: []) }
}
