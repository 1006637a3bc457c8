// Checks on the test harness itself: HTTPClient's response parsing against a scripted server.
import Foundation
import Testing

@Suite("harness")
struct HarnessTests {
    @Test("HTTPClient parses chunked trailers, 1xx, 204, 304, HEAD and read-to-close bodies")
    func clientParsesEdgeCases() throws {
        let server = try RawServer { connection in
            var index = 0
            while connection.readHead() != nil {
                index += 1
                switch index {
                case 1:
                    connection.write(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                            + "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n")
                case 2:
                    connection.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
                case 3:
                    connection.write("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
                case 4:
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")  // answer to HEAD
                default:
                    connection.write("HTTP/1.0 200 OK\r\n\r\nuntil the end")
                    connection.close()
                    return
                }
            }
        }
        defer { server.stop() }
        let client = try HTTPClient(port: server.port)

        let chunked = try client.request(path: "/1")
        #expect(chunked.framing == .chunked)
        #expect(chunked.text == "hello world")
        #expect(chunked.trailers["x-sum"] == "11")
        #expect(chunked.checksum == Checksum.of(Array("hello world".utf8)))

        let noContent = try client.request(path: "/2")
        #expect(noContent.status == 204)
        #expect(noContent.headers.values("X-A") == ["1", "2"])

        let notModified = try client.request(path: "/3")
        #expect(notModified.status == 304)
        #expect(notModified.bodyLength == 0)

        let head = try client.request(method: "HEAD", path: "/4")
        #expect(head.headers["content-length"] == "1234")
        #expect(head.body.isEmpty)

        let untilClose = try client.request(path: "/5")
        #expect(untilClose.framing == .untilClose)
        #expect(untilClose.text == "until the end")
        #expect(client.isClosedByPeer())
        #expect(server.acceptedCount == 1)
    }

    @Test("Checksum does not depend on how the stream is split")
    func checksumIsSplitIndependent() {
        let bytes = BytePattern.bytes(offset: 0, count: 100_003)
        var pieces = Checksum()
        var offset = 0
        for size in [1, 7, 8, 9, 4096, 13, 65_536] where offset < bytes.count {
            let end = min(bytes.count, offset + size)
            pieces.update(Array(bytes[offset..<end]))
            offset = end
        }
        pieces.update(Array(bytes[offset...]))
        #expect(pieces.value == Checksum.of(bytes))
        #expect(pieces.value == BytePattern.checksum(count: bytes.count))
        #expect(Checksum.of(bytes) != Checksum.of(Array(bytes.dropLast())))
        #expect(BytePattern.bytes(offset: 250, count: 3) == [250, 0, 1])
    }
}
