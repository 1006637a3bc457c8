import Foundation
import Logging
import NIOConcurrencyHelpers
import TurnoutHTTP

/// The audit log: one JSON object per line for every mutation — who, what,
/// and the state before and after. Written to `TURNOUT_AUDIT_LOG`, or
/// `turnout-audit.jsonl` beside the config file; every entry is also logged.
public final class AuditLog: Sendable {
    public let path: String
    private let file: NIOLockedValueBox<FileHandle?>
    private let logger: Logger

    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = FileHandle(forWritingAtPath: path)
        _ = try? handle?.seekToEnd()
        if handle == nil {
            logger.error("cannot open the audit log; entries go to the log only", metadata: ["path": "\(path)"])
        }
        self.file = NIOLockedValueBox(handle)
    }

    public static func defaultPath(configPath: String, environment: [String: String]) -> String {
        if let path = environment["TURNOUT_AUDIT_LOG"], !path.isEmpty { return path }
        let directory = (configPath as NSString).deletingLastPathComponent
        return (directory.isEmpty ? "." : directory) + "/turnout-audit.jsonl"
    }

    /// Appends an entry. `before`/`after` are JSON texts (or nil).
    public func record(actor: String, action: String, before: String? = nil, after: String? = nil, detail: String? = nil) {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var line = #"{"at":\#(JSONText.quote(formatter.string(from: Date()))),"actor":\#(JSONText.quote(actor)),"action":\#(JSONText.quote(action))"#
        if let before { line += #","before":\#(before)"# }
        if let after { line += #","after":\#(after)"# }
        if let detail { line += #","detail":\#(JSONText.quote(detail))"# }
        line += "}\n"
        self.logger.notice("audit", metadata: ["actor": "\(actor)", "action": "\(action)", "detail": "\(detail ?? "")"])
        self.file.withLockedValue { handle in
            handle?.write(Data(line.utf8))
        }
    }
}
