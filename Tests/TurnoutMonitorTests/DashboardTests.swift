import Foundation
import Testing
@testable import TurnoutMonitor

@Suite struct DashboardTests {
    let html = Dashboard.html

    func matches(_ pattern: String) throws -> [String] {
        let regex = try NSRegularExpression(pattern: pattern)
        let range = NSRange(html.startIndex..., in: html)
        return regex.matches(in: html, range: range).compactMap { match in
            Range(match.range(at: 1), in: html).map { String(html[$0]) }
        }
    }

    @Test func isSelfContained() {
        // The one <link>: an empty inline icon, so the browser does not ask for /favicon.ico.
        #expect(html.contains(#"<link rel="icon" href="data:,">"#))
        let lower = html.replacingOccurrences(of: #"<link rel="icon" href="data:,">"#, with: "").lowercased()
        #expect(lower.hasPrefix("<!doctype html>"))
        #expect(!lower.contains("http:"))
        #expect(!lower.contains("https:"))
        #expect(!lower.contains("<script src"))
        #expect(!lower.contains(" src="))
        #expect(!lower.contains("<link"))
        #expect(!lower.contains("@import"))
        #expect(!lower.contains("url("))
        #expect(!lower.contains("\"//"))
        #expect(!lower.contains("'//"))
        #expect(lower.contains("<canvas") || lower.contains("createelement('canvas')"))
        #expect(!lower.contains("innerhtml"))
    }

    @Test func talksOnlyToTheAdminAPIWithTheCookie() throws {
        // Every quoted string that looks like an absolute path is under /api/optimized.
        let paths = try matches(#"['"](/[A-Za-z0-9_./?=&-]*)['"]"#)
        #expect(!paths.isEmpty)
        for path in paths { #expect(path.hasPrefix("/api/optimized"), "\(path)") }
        for needed in ["'/api/optimized/metrics'", "'/api/optimized'", "'/api/optimized/migrate'", "'/api/optimized/rollout'"] {
            #expect(html.contains(needed), "\(needed)")
        }
        #expect(html.contains("credentials: 'same-origin'"))
        #expect(html.contains("'Bearer ' + token"))
        #expect(html.contains("params.get('token')"))
        #expect(html.contains("'POST', '/api/optimized/migrate'"))
        #expect(html.contains("'PUT', '/api/optimized/rollout', { percent: n }"))
        #expect(html.contains("'DELETE', '/api/optimized'"))
        #expect(html.contains("window.confirm("))
        #expect(html.contains("POLL_MS = 2000"))
    }

    @Test func chartsReadColumnsThatMonitorJSONWrites() throws {
        let keys = try matches(#"key: '([a-z0-9_]+)'"#)
        #expect(keys.count >= 10)
        let json = try JSONSerialization.jsonObject(with: Data(MonitorJSON.metrics(
            current: sample(1), history: [sample(0), sample(1)], alerts: [], topClients: [])))
        let history = try #require((json as? [String: Any])?["history"] as? [String: Any])
        for key in keys { #expect(history[key] is [Any], "history has no column \(key)") }
        for threshold in try matches(#"threshold: '([a-z_]+)'"#) + ["cache_hit_rate", "memory_usage"] {
            #expect(AlertName(rawValue: threshold) != nil, "\(threshold)")
        }
    }

    @Test func everyElementTheScriptUsesExists() throws {
        let ids = Set(try matches(#"id="([a-z0-9-]+)""#))
        let used = Set(try matches(#"\$\('([a-z0-9-]+)'\)"#) + matches(#"setText\('([a-z0-9-]+)'"#)
                       + matches(#"setBadge\('([a-z0-9-]+)'"#) + matches(#"fillTable\('([a-z0-9-]+)'"#))
        #expect(used.count > 30)
        for id in used { #expect(ids.contains(id), "no element with id \(id)") }
    }
}
