// Entry points: read proxy.conf, parse, validate, apply TURNOUT_* overrides.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads proxy.conf into a validated `Config`, or throws every problem found.
public enum ConfigLoader {
    /// Largest config file accepted.
    public static let maxFileBytes = 4 << 20

    /// Reads, parses and validates the file at `path`, then applies `TURNOUT_*` overrides
    /// from `environment` (by default the process environment).
    ///
    /// Relative paths in the file (`tls_cert`, `tls_key`, plugin `path`) are resolved
    /// against the directory of `path`.
    public static func load(path: String,
                            environment: [String: String] = ConfigLoader.processEnvironment())
        throws(ConfigErrors) -> Config
    {
        let bytes: [UInt8]
        switch readFile(path) {
        case .success(let b): bytes = b
        case .failure(let failure):
            throw ConfigErrors([ConfigError(file: path, message: failure.message)])
        }
        return try parse(bytes: bytes, path: path, environment: environment)
    }

    /// Parses and validates config text; `path` names it in errors and anchors relative paths.
    public static func parse(text: String, path: String = "proxy.conf",
                             environment: [String: String] = [:]) throws(ConfigErrors) -> Config
    {
        try parse(bytes: Array(text.utf8), path: path, environment: environment)
    }

    static func parse(bytes: [UInt8], path: String, environment: [String: String]) throws(ConfigErrors) -> Config {
        let root: TOMLTable
        do {
            root = try TOMLParser.parseDocument(bytes)
        } catch {
            throw ConfigErrors([ConfigError(file: path, line: error.line, message: error.message)])
        }
        let validator = ConfigValidator(file: path, environment: environment)
        let config = validator.validate(root)
        guard validator.errors.isEmpty else {
            throw ConfigErrors(sorted(validator.errors))
        }
        return config
    }

    /// File errors by line, then file errors without a line, then environment errors;
    /// otherwise in the order found.
    private static func sorted(_ errors: [ConfigError]) -> [ConfigError] {
        func rank(_ e: ConfigError) -> (Int, Int) {
            if e.environmentVariable != nil { return (2, 0) }
            if let l = e.line { return (0, l) }
            return (1, 0)
        }
        return errors.enumerated().sorted { a, b in
            let ra = rank(a.element), rb = rank(b.element)
            return ra != rb ? ra < rb : a.offset < b.offset
        }.map(\.element)
    }

    /// The process environment.
    public static func processEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        #if canImport(Darwin)
        let table: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = _NSGetEnviron()?.pointee
        #else
        let table: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ  // NULL after clearenv()
        #endif
        guard var p = table else { return result }
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                result[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return result
    }

    /// The whole file, or a message naming the path and the OS error.
    private static func readFile(_ path: String) -> Result<[UInt8], ConfigErrorMessage> {
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            return .failure(ConfigErrorMessage("cannot open \(path): \(osError(errno))"))
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ConfigErrorMessage("cannot read \(path): \(osError(errno))"))
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
            if out.count > maxFileBytes {
                return .failure(ConfigErrorMessage("cannot read \(path): larger than \(maxFileBytes) bytes"))
            }
        }
        return .success(out)
    }

    private static func osError(_ code: Int32) -> String {
        guard let s = strerror(code) else { return "error \(code)" }
        return "\(String(cString: s)) (errno \(code))"
    }
}

struct ConfigErrorMessage: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
