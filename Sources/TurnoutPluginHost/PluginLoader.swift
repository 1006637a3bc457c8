// Loading one plugin file into a running instance, step by step:
//   read → ELF check → SHA-256 → private copy → dlopen → entry → ABI checks →
//   init. Any step can refuse the file with a PluginLoadError; nothing here
//   dlcloses (Swift code must never be unloaded) or writes to a path that may
//   be mapped.
import CTurnoutPluginABI
import Logging
import TurnoutConfig
import TurnoutHTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads plugin files. ``PluginRegistry`` uses it for serving; `turnout check` uses ``check(_:services:stateDirectory:logger:)``.
public enum PluginLoader {
    /// For `turnout check`: validates and loads one plugin into a throwaway
    /// instance (destroyed again at once; the library stays mapped) and
    /// reports its name and version, or the error.
    public static func check(
        _ plugin: PluginConfig,
        services: any PluginServices,
        stateDirectory: String,
        logger: Logger = Logger(label: "turnout.plugin.check")
    ) -> Result<(name: String, version: String), PluginLoadError> {
        let stateDirectory = stateDirectory.isEmpty ? "." : stateDirectory
        let file: (bytes: [UInt8], stamp: FileStamp)
        do {
            file = try PluginFiles.readFile(plugin.path)
        } catch {
            return .failure(error)
        }
        switch load(plugin, bytes: file.bytes, sha256: hexDigest(file.bytes), services: services, stateDirectory: stateDirectory, logger: logger) {
        case .success(let loaded):
            loaded.context.lifecycle.retire(successor: nil)
            return .success((loaded.name, loaded.version))
        case .failure(let error):
            return .failure(error)
        }
    }

    static func hexDigest(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { SHA256Hasher.hex(SHA256Hasher.hash($0)) }
    }

    /// A file-name-safe form of a plugin name.
    static func safeFileName(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars.prefix(64) {
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".": out.unicodeScalars.append(scalar)
            default: out.append("_")
            }
        }
        if out.isEmpty || out.hasPrefix(".") { out = "p" + out }
        return out
    }

    /// Runs every step after reading: ELF check, private copy, dlopen, ABI
    /// checks, init. On success the new instance is active but not yet
    /// published anywhere.
    static func load(
        _ config: PluginConfig,
        bytes: [UInt8],
        sha256: String,
        services: any PluginServices,
        stateDirectory: String,
        logger: Logger
    ) -> Result<LoadedPlugin, PluginLoadError> {
        do {
            return .success(try loadThrowing(config, bytes: bytes, sha256: sha256, services: services, stateDirectory: stateDirectory, logger: logger))
        } catch {
            return .failure(error)
        }
    }

    private static func loadThrowing(
        _ config: PluginConfig,
        bytes: [UInt8],
        sha256: String,
        services: any PluginServices,
        stateDirectory: String,
        logger: Logger
    ) throws(PluginLoadError) -> LoadedPlugin {
        let path = config.path
        func refuse(_ kind: PluginLoadError.Kind, _ why: String) -> PluginLoadError {
            PluginLoadError(kind: kind, path: path, message: "plugin \(config.name) (\(path)): \(why)")
        }

        // 1. A complete ELF shared library for this machine, before dlopen sees it.
        let elfCheck = bytes.withUnsafeBytes { raw -> PluginLoadError? in
            do throws(PluginLoadError) {
                try ELFValidator.validate(raw, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let elfCheck { throw elfCheck }

        // 2. The private, content-addressed copy.
        let privatePath = try privateCopy(bytes, name: config.name, sha256: sha256, stateDirectory: stateDirectory, sourcePath: path)

        // 3. dlopen it. Never dlclose: Swift code must stay mapped.
        _ = dlerror()
        guard let handle = dlopen(privatePath, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw refuse(.dlopenFailed, "the dynamic loader refused it: \(why)")
        }

        // 4. The entry point and the descriptor it returns.
        guard let symbol = dlsym(handle, TURNOUT_PLUGIN_ENTRY_SYMBOL) else {
            throw refuse(
                .missingEntry,
                "it does not export \(TURNOUT_PLUGIN_ENTRY_SYMBOL), so it is not a Turnout plugin; build it against turnout_plugin.h (or the Swift SDK) and export that symbol"
            )
        }
        let entry = unsafeBitCast(symbol, to: turnout_plugin_entry_fn.self)
        guard let descriptor = entry(UInt32(TURNOUT_ABI_MAJOR), UInt32(TURNOUT_ABI_MINOR)) else {
            throw refuse(
                .entryReturnedNull,
                "its \(TURNOUT_PLUGIN_ENTRY_SYMBOL) returned NULL (it refuses this host's ABI \(TURNOUT_ABI_MAJOR).\(TURNOUT_ABI_MINOR)); rebuild it against this Turnout's turnout_plugin.h"
            )
        }
        // Read the fixed prefix first: a smaller (foreign) struct must not be read past its end.
        let raw = UnsafeRawPointer(descriptor)
        let abiMajor = raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        let abiMinor = raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        let structSize = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard abiMajor == UInt32(TURNOUT_ABI_MAJOR) else {
            throw refuse(
                .abiMismatch,
                "it was built for plugin ABI \(abiMajor).\(abiMinor) but this Turnout speaks ABI \(TURNOUT_ABI_MAJOR).\(TURNOUT_ABI_MINOR); rebuild the plugin against this Turnout's turnout_plugin.h"
            )
        }
        // ABI 1.0's descriptor ends before `observe_flags`; newer fields of a
        // smaller descriptor read as 0.
        let v1Size = MemoryLayout<turnout_plugin_v1>.offset(of: \.observe_flags) ?? MemoryLayout<turnout_plugin_v1>.size
        guard Int(structSize) >= v1Size else {
            throw refuse(
                .structTooSmall,
                "its descriptor is \(structSize) bytes, smaller than the \(v1Size) of ABI \(TURNOUT_ABI_MAJOR).0; it was built from a damaged or foreign header; rebuild it against turnout_plugin.h"
            )
        }
        var d = turnout_plugin_v1()
        withUnsafeMutableBytes(of: &d) { out in
            out.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(Int(structSize), out.count)))
        }
        guard let namePointer = d.name else {
            throw refuse(.missingHook, "its descriptor has no name; set `name` in turnout_plugin_v1")
        }
        let pluginName = boundedString(namePointer)
        let version = d.version.map { boundedString($0) } ?? ""
        guard pluginName == config.name else {
            throw refuse(
                .nameMismatch,
                "the file contains the plugin \(JSONText.quote(pluginName)), not \(JSONText.quote(config.name)); fix `name` or `path` in proxy.conf"
            )
        }
        guard let initHook = d.`init` else {
            throw refuse(.missingHook, "its descriptor has no init hook; every plugin must provide init")
        }
        guard let onRequest = d.on_request else {
            throw refuse(.missingHook, "its descriptor has no on_request hook; every plugin must provide on_request")
        }
        let hooks = PluginHooks(onRequest: onRequest, onObserve: d.on_observe, destroy: d.destroy,
                                observeWritesOnly: d.observe_flags & UInt32(TURNOUT_OBSERVE_WRITES_ONLY) != 0)

        // 5. init, on this (non event-loop) thread.
        let context = HostContext.make(pluginName: pluginName, services: services, logger: logger, configJSON: config.config.jsonString())
        let capacity = 1024
        var errorBuffer = [CChar](repeating: 0, count: capacity)
        let instance = errorBuffer.withUnsafeMutableBufferPointer { buffer in
            initHook(context.hostTable, buffer.baseAddress, capacity)
        }
        guard let instance else {
            errorBuffer[capacity - 1] = 0
            var why = errorBuffer.withUnsafeBufferPointer { buffer in
                buffer.baseAddress.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: strlen($0)), as: UTF8.self) } ?? ""
            }
            if why.isEmpty { why = "init returned NULL without a message" }
            // Nothing was created: nothing to destroy. The context stays (the plugin may hold its pointer).
            context.lifecycle.retire(successor: nil)
            throw refuse(.initFailed, "init failed: \(why)")
        }
        let pointer = PluginPointer(raw: instance)
        context.lifecycle.activate(instance: pointer, hooks: hooks)
        return LoadedPlugin(
            name: pluginName, version: version.isEmpty ? "unknown" : version, sourcePath: path, privatePath: privatePath,
            sha256: sha256, context: context, instance: pointer, hooks: hooks
        )
    }

    /// A NUL-terminated string from the plugin's image, copied (at most 256 bytes).
    private static func boundedString(_ pointer: UnsafePointer<CChar>) -> String {
        let length = strnlen(pointer, 256)
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
    }

    /// `<stateDirectory>/<name>-<sha256 first 16 hex>.so`, written once.
    static func privateCopy(_ bytes: [UInt8], name: String, sha256: String, stateDirectory: String, sourcePath: String) throws(PluginLoadError) -> String {
        try PluginFiles.makeDirectories(stateDirectory)
        let finalPath = "\(stateDirectory)/\(safeFileName(name))-\(sha256.prefix(16)).so"
        if PluginFiles.stamp(finalPath) != nil {
            if PluginFiles.contentEquals(finalPath, bytes) { return finalPath }
            // Same name, other bytes (a damaged state directory). Replace it
            // only if this process has not mapped it.
            if dlopen(finalPath, RTLD_NOW | RTLD_NOLOAD) != nil {
                throw PluginLoadError(
                    kind: .io, path: sourcePath,
                    message: "plugin file \(sourcePath): its private copy \(finalPath) is loaded but no longer matches; restart Turnout or clear the state directory"
                )
            }
        }
        try PluginFiles.writeAtomically(bytes, to: finalPath, directory: stateDirectory, sourcePath: sourcePath)
        return finalPath
    }
}
