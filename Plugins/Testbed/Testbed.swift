/// The `testbed` plugin: a plugin the tests steer with request headers.
///
/// - no `x-testbed` header: relays the request to the legacy API (in `handle`)
///   and adds `x-testbed-version: <version>` to its response;
/// - `x-testbed: respond` → 200 `{"plugin":"testbed","version":"…"}` from
///   `handleNow` (the synchronous fast path, no Task);
/// - `x-testbed: decline` → declines (the host passes the request to legacy);
/// - `x-testbed: error` → throws (the host falls back to legacy);
/// - `x-testbed: status-503` → answers 503 with the same JSON;
/// - `x-testbed: sleep-<ms>` → sleeps in `handle`, then answers like `respond`;
/// - `x-testbed: relay-then-sleep-<ms>` → relays to legacy first, then sleeps,
///   then returns the legacy response (a write that reached legacy before the
///   host's latency budget fired must not be replayed);
/// - `x-testbed: respond-then-relay` → answers like `respond`, then relays the
///   same request to legacy from a background task (which the SDK turns into a
///   background `legacy_call` with no exchange, as the exchange is answered);
/// - `x-testbed: services` → exercises every host service once (cache set/get
///   with ttl and tags, invalidations, enqueue, publish, count) and answers
///   with what they returned, as JSON;
/// - `x-testbed-control: fail-on` / `fail-off` → answers `{"fail":true|false}`
///   and flips a switch after which every request without `x-testbed` throws.
///   The switch is an atomic global of this library image: every instance of
///   this version shares it, a newly loaded version starts with it off.
///
/// Every response the plugin makes or relays carries `x-testbed-version`, and
/// `x-testbed-tag: <tag>` when `[plugin.config]` has a string `tag`. With
/// `fail_init = true` in `[plugin.config]`, init throws (a plugin that fails
/// its init). As an `ObservingPlugin` it counts every finished request it is
/// shown, by lane: counters `observed_legacy` and `observed_optimized`.
///
/// This file is shared by Plugins/Testbed and Plugins/TestbedV2 (a symlink);
/// each has a Version.swift defining `testbedVersion`.
import Synchronization
import TurnoutPluginKit

/// The `x-testbed-control` switch.
private let failing = Atomic<Bool>(false)

final class Testbed: ObservingPlugin {
    static let name = "testbed"
    static let version = testbedVersion

    private let host: PluginHost
    private let tag: String?

    init(host: PluginHost) throws {
        if host.config.bool("fail_init") == true {
            throw PluginError("testbed \(Self.version): fail_init is set in [plugin.config]")
        }
        self.host = host
        self.tag = host.config.string("tag")
    }

    func handleNow(_ request: PluginRequest) throws -> Reply {
        if let control = request.headers["x-testbed-control"] {
            let on: Bool
            switch control {
            case "fail-on": on = true
            case "fail-off": on = false
            default: throw PluginError("testbed: unknown x-testbed-control value '\(control)'")
            }
            failing.store(on, ordering: .sequentiallyConsistent)
            host.log(.info, "testbed \(Self.version): fail switch \(on ? "on" : "off")")
            return .respond(decorate(.json(200, #"{"fail":\#(on)}"#)))
        }
        guard let mode = request.headers["x-testbed"] else {
            if failing.load(ordering: .sequentiallyConsistent) {
                throw PluginError("testbed \(Self.version): failing on command (x-testbed-control: fail-on)")
            }
            return .later
        }
        switch mode {
        case "respond":
            return .respond(hello(200))
        case "decline":
            return .decline
        case "error":
            throw PluginError("testbed \(Self.version): error requested by x-testbed")
        case "status-503":
            return .respond(hello(503))
        case "respond-then-relay":
            return .later
        case "services":
            return .respond(decorate(.json(200, services(request))))
        default:
            if Self.milliseconds(mode, after: "sleep-") != nil || Self.milliseconds(mode, after: "relay-then-sleep-") != nil {
                return .later
            }
            throw PluginError("testbed: unknown x-testbed value '\(mode)'")
        }
    }

    func handle(_ request: PluginRequest) async throws -> PluginResponse {
        let mode = request.headers["x-testbed"] ?? ""
        if let ms = Self.milliseconds(mode, after: "sleep-") {
            try await Task.sleep(nanoseconds: ms * 1_000_000)
            return hello(200)
        }
        if mode == "respond-then-relay" {
            let host = self.host
            Task {
                try? await Task.sleep(nanoseconds: 50_000_000)
                _ = try? await host.legacy(request)
            }
            return hello(200)
        }
        if let ms = Self.milliseconds(mode, after: "relay-then-sleep-") {
            // A request built anew (not the one handed over): the SDK still ties
            // the call to this exchange, so the host knows the write went out.
            let response = try await host.legacy(method: request.method, target: request.target,
                                                 headers: request.headers, body: request.body)
            try await Task.sleep(nanoseconds: ms * 1_000_000)
            return decorate(response)
        }
        return decorate(try await host.legacy(request))
    }

    func observe(_ request: PluginRequest, _ response: PluginResponse, lane: Lane) {
        host.count(lane == .optimized ? "observed_optimized" : "observed_legacy")
    }

    private func services(_ request: PluginRequest) -> String {
        let set = host.cacheSet("testbed:\(request.target)", request.body, ttl: 5, tags: ["testbed", "t:\(request.method)"])
        let got = host.cacheGet("testbed:\(request.target)").map { String(decoding: $0, as: UTF8.self) } ?? ""
        let missed = host.cacheGet("testbed:absent") == nil
        let byPattern = host.invalidate(pattern: "testbed:*")
        let byTag = host.invalidate(tag: "testbed")
        let enqueued = host.enqueue(type: "testbed.event", payload: #"{"target":"\#(request.target)"}"#)
        let published = host.publish(channel: "testbed:1", type: "testbed.event", data: "{}")
        host.count("services")
        return #"{"set":\#(set),"get":"\#(got)","missed":\#(missed),"pattern":\#(byPattern),"tag":\#(byTag),"#
            + #""enqueued":\#(enqueued),"published":\#(published)}"#
    }

    private func hello(_ status: Int) -> PluginResponse {
        decorate(.json(status, #"{"plugin":"testbed","version":"\#(Self.version)"}"#))
    }

    private func decorate(_ response: PluginResponse) -> PluginResponse {
        var response = response
        response.headers.set("x-testbed-version", Self.version)
        if let tag { response.headers.set("x-testbed-tag", tag) }
        return response
    }

    /// The milliseconds of "<prefix><ms>", 0...600000, or nil.
    private static func milliseconds(_ mode: String, after prefix: String) -> UInt64? {
        guard mode.hasPrefix(prefix), let ms = UInt64(mode.dropFirst(prefix.count)), ms <= 600_000 else { return nil }
        return ms
    }
}

@_cdecl("turnout_plugin_entry_v1")
public func turnoutPluginEntry(_ major: UInt32, _ minor: UInt32) -> UnsafeRawPointer? {
    exportPlugin(Testbed.self, major, minor)
}
