import Testing
@testable import TurnoutCache

@Suite struct CompressionTests {
    /// A 100 KB JSON-like body: compressible, like a list of messages.
    static let body: [UInt8] = {
        var text = "{\"messages\":["
        var i = 0
        while text.utf8.count < 100_000 {
            text += #"{"id":"\#(i)","conversation_id":42,"from":"+5511999","to":"+5511888","body":"message number \#(i)","status":"sent"},"#
            i += 1
        }
        return Array((text + "{}]}").utf8)
    }()

    @Test func roundTripsAndAccountsTheCompressedSize() {
        let plain = CacheStore(config: CacheConfig(maxBytes: 10_000_000))
        let packed = CacheStore(config: CacheConfig(maxBytes: 10_000_000), compressionThreshold: 10_240)
        plain.set("k", value: Self.body, now: 0)
        packed.set("k", value: Self.body, now: 0)
        #expect(packed.get("k", now: 1)?.value == Self.body)
        #expect(plain.get("k", now: 1)?.value == Self.body)
        let ratio = Double(plain.stats.bytesHeld) / Double(packed.stats.bytesHeld)
        #expect(ratio > 4, "compressed entry holds \(packed.stats.bytesHeld) bytes vs \(plain.stats.bytesHeld)")
        #expect(packed.checkInvariants().isEmpty)
    }

    @Test func smallAndIncompressibleValuesAreStoredAsIs() {
        let store = CacheStore(config: CacheConfig(maxBytes: 10_000_000), compressionThreshold: 100)
        let small = Array("short".utf8)
        var noise = [UInt8](repeating: 0, count: 50_000)
        var x: UInt32 = 2_463_534_242
        for i in noise.indices { x ^= x << 13; x ^= x >> 17; x ^= x << 5; noise[i] = UInt8(truncatingIfNeeded: x) }
        store.set("small", value: small, now: 0)
        store.set("noise", value: noise, now: 0)
        #expect(store.get("small", now: 1)?.value == small)
        #expect(store.get("noise", now: 1)?.value == noise)
        #expect(ValueCodec.encode(noise, threshold: 100).first == 0)
        #expect(ValueCodec.encode(Self.body, threshold: 100).first == 1)
    }

    @Test func corruptStoredBytesDecodeToNil() {
        var packed = ValueCodec.encode(Self.body, threshold: 100)
        #expect(ValueCodec.decode(packed) == Self.body)
        packed[packed.count / 2] ^= 0xff
        #expect(ValueCodec.decode(packed) != Self.body)
        #expect(ValueCodec.decode([7, 1, 2]) == nil)
        #expect(ValueCodec.decode([1, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]) == nil)
        #expect(ValueCodec.decode([]) == nil)
    }

    @Test func snapshotsKeepCompressedValuesReadable() throws {
        let store = CacheStore(config: CacheConfig(maxBytes: 10_000_000), compressionThreshold: 1000)
        store.set("k", value: Self.body, now: 0)
        let restored = try CacheStore.restore(store.snapshot(now: 1), config: CacheConfig(maxBytes: 10_000_000), compressionThreshold: 1000, now: 1).get()
        #expect(restored.get("k", now: 2)?.value == Self.body)
    }
}
