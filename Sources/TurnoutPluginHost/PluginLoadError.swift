/// Why a plugin file was refused. The ``message`` names the file and says
/// what to do; it is what `turnout check` prints and what the admin API shows.
public struct PluginLoadError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The class of failure; more kinds may be added.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The file could not be read, copied or found.
        public static let io = Kind("io")
        /// The file is empty, text, or otherwise not an ELF file.
        public static let notELF = Kind("notELF")
        /// An ELF file that is not a 64-bit little-endian shared library.
        public static let notSharedLibrary = Kind("notSharedLibrary")
        /// Built for another CPU.
        public static let wrongArchitecture = Kind("wrongArchitecture")
        /// Headers or segments point past the end of the file (cut short, still being written).
        public static let truncated = Kind("truncated")
        /// `dlopen` refused the file.
        public static let dlopenFailed = Kind("dlopenFailed")
        /// The library does not export `turnout_plugin_entry_v1`.
        public static let missingEntry = Kind("missingEntry")
        /// The entry point returned NULL.
        public static let entryReturnedNull = Kind("entryReturnedNull")
        /// Built against another major ABI version.
        public static let abiMismatch = Kind("abiMismatch")
        /// The descriptor is smaller than a v1.0 `turnout_plugin_v1`.
        public static let structTooSmall = Kind("structTooSmall")
        /// A required hook (`init`, `on_request`) or the name is NULL.
        public static let missingHook = Kind("missingHook")
        /// The plugin's name differs from the `name` in proxy.conf.
        public static let nameMismatch = Kind("nameMismatch")
        /// The plugin's `init` returned NULL.
        public static let initFailed = Kind("initFailed")
    }

    public var kind: Kind
    /// The configured path of the plugin file.
    public var path: String
    /// A full sentence naming the file and what to do.
    public var message: String

    public init(kind: Kind, path: String, message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String { message }
}
