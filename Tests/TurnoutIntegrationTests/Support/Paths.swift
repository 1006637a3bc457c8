// Where the binaries under test live, and the harness's error type.
import Foundation

/// A harness failure with a message meant for the test log (binary missing, process died,
/// timeout, malformed response…). Thrown errors fail the current swift-testing test.
public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The package root, derived from this file's location (`<root>/Tests/TurnoutIntegrationTests/Support/Paths.swift`).
public let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // Support
    .deletingLastPathComponent()  // TurnoutIntegrationTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

/// The folder holding the built executables (`turnout`, `demo-crm`, plugins):
/// `$TURNOUT_BIN_DIR` if set; else the folder of the running test bundle when it holds the
/// binaries (so `swift test -c release` tests release builds); else `<package root>/.build/debug`.
public var binDir: URL {
    if let dir = ProcessInfo.processInfo.environment["TURNOUT_BIN_DIR"], !dir.isEmpty {
        return URL(fileURLWithPath: dir, isDirectory: true)
    }
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("demo-crm").path) {
            return dir
        }
    }
    return packageRoot.appendingPathComponent(".build/debug", isDirectory: true)
}

/// The path of executable `name` in `binDir`; throws a clear error when it has not been built.
public func binary(_ name: String) throws -> URL {
    let url = binDir.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw HarnessError(
            "binary '\(name)' not found at \(url.path): build it first (`swift build`) or set TURNOUT_BIN_DIR")
    }
    return url
}
