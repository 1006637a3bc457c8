/// The `passthrough` plugin: the trivial optimized lane. Every request goes to
/// the legacy API through the host (`legacy_call`) and its response comes back
/// unchanged. It uses `Reply.relay`, so a request costs the SDK one copy of the
/// request into Swift and no Task, no continuation and no copy of the response:
/// the benchmark measures the plugin machinery, not plugin logic.
import TurnoutPluginKit

final class Passthrough: TurnoutPlugin {
    static let name = "passthrough"
    static let version = "1.0.0"

    init(host: PluginHost) {}

    func handleNow(_ request: PluginRequest) -> Reply { .relay }
}

@_cdecl("turnout_plugin_entry_v1")
public func turnoutPluginEntry(_ major: UInt32, _ minor: UInt32) -> UnsafeRawPointer? {
    exportPlugin(Passthrough.self, major, minor)
}
