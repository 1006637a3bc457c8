/// A response: from the plugin to the host, or from the legacy API to the plugin.
///
/// The host frames the body itself: a plugin need not set `content-length`, and
/// the host drops hop-by-hop fields.
public struct PluginResponse: Sendable {
    /// HTTP status, 100...999 (anything else fails the request instead of answering).
    public var status: Int
    public var headers: PluginHeaders
    public var body: [UInt8]

    public init(status: Int = 200, headers: PluginHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response with a JSON body and `content-type: application/json`.
    public static func json(_ status: Int = 200, _ json: String, headers: PluginHeaders = [:]) -> PluginResponse {
        var h = headers
        h.set("content-type", "application/json")
        return PluginResponse(status: status, headers: h, body: Array(json.utf8))
    }

    /// A response with a text body and `content-type: text/plain; charset=utf-8`.
    public static func text(_ status: Int = 200, _ text: String, headers: PluginHeaders = [:]) -> PluginResponse {
        var h = headers
        h.set("content-type", "text/plain; charset=utf-8")
        return PluginResponse(status: status, headers: h, body: Array(text.utf8))
    }

    /// The body as UTF-8 text (invalid bytes replaced).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}
