// The set of loaded plugins and its changes over time: config applies,
// explicit reloads (SIGHUP, POST /api/optimized/reload) and file polling.
// A new version is published only after its init succeeded; the version it
// replaces is retired (finishes what it has in flight, then is destroyed).
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import TurnoutConfig

/// One configured plugin as the admin API and `turnout check` show it.
public struct PluginStatus: Sendable, Equatable {
    /// The configured name.
    public var name: String
    /// The serving version, nil when none loaded.
    public var version: String?
    /// The configured path.
    public var path: String
    /// When the serving version was loaded.
    public var loadedAt: Date?
    /// Why the last load of this plugin's file failed; nil when it did not.
    /// The previous version (if any) keeps serving meanwhile.
    public var error: String?
    /// How many versions of this plugin were replaced since it was configured.
    public var retiredVersions: Int
    /// SHA-256 of the serving version's file.
    public var sha256: String?
    /// Requests and calls in the serving version right now.
    public var inFlight: Int

    public init(
        name: String, version: String? = nil, path: String, loadedAt: Date? = nil, error: String? = nil,
        retiredVersions: Int = 0, sha256: String? = nil, inFlight: Int = 0
    ) {
        self.name = name
        self.version = version
        self.path = path
        self.loadedAt = loadedAt
        self.error = error
        self.retiredVersions = retiredVersions
        self.sha256 = sha256
        self.inFlight = inFlight
    }
}

/// The loaded plugins by name. All methods are thread-safe; ``apply(_:)``,
/// ``reloadAll()``, ``pollFiles()`` and ``shutdown()`` run plugin code
/// (`init`) and file I/O, so call them off the event loops. They are
/// serialized among themselves; ``current(_:)`` never waits for them.
public final class PluginRegistry: Sendable {
    /// How long a changed file must stay unchanged before polling loads it.
    public static let stableInterval = TimeAmount.milliseconds(200)

    private struct Slot {
        var config: PluginConfig
        var current: LoadedPlugin?
        var error: String?
        /// The file state last loaded or last refused (not retried until it changes).
        var lastStamp: FileStamp?
        /// A changed file state first seen at `since`, waiting to be stable.
        var candidate: (stamp: FileStamp, since: NIODeadline)?
        var retiredVersions = 0
    }

    private struct Slots {
        var order: [String] = []
        var byName: [String: Slot] = [:]
        var retiredTotal = 0
        var shutDown = false
    }

    private let services: any PluginServices
    private let stateDirectory: String
    private let logger: Logger
    /// Serializes the operations that load.
    private let operationLock = NIOLock()
    private let slots = NIOLockedValueBox(Slots())
    /// What ``current(_:)`` reads: swapped only after a successful init.
    private let serving = NIOLockedValueBox<[String: LoadedPlugin]>([:])

    /// - Parameters:
    ///   - services: what plugins may ask of the host.
    ///   - stateDirectory: where private copies of plugin files are written
    ///     (created if missing; must be writable and on a filesystem that
    ///     allows mapping executable code).
    public init(services: any PluginServices, stateDirectory: String, logger: Logger) {
        self.services = services
        self.stateDirectory = stateDirectory.isEmpty ? "." : stateDirectory
        self.logger = logger
    }

    /// The serving version of `name`, if one is loaded.
    public func current(_ name: String) -> LoadedPlugin? {
        serving.withLockedValue { $0[name] }
    }

    /// One entry per configured plugin, in config order.
    public var status: [PluginStatus] {
        slots.withLockedValue { s in
            s.order.compactMap { name in
                guard let slot = s.byName[name] else { return nil }
                return PluginStatus(
                    name: name,
                    version: slot.current?.version,
                    path: slot.config.path,
                    loadedAt: slot.current?.loadedAt,
                    error: slot.error,
                    retiredVersions: slot.retiredVersions,
                    sha256: slot.current?.sha256,
                    inFlight: slot.current?.inFlight ?? 0
                )
            }
        }
    }

    /// How many versions were replaced or removed in this registry's life
    /// (each stays mapped in memory).
    public var retiredVersionCount: Int {
        slots.withLockedValue { $0.retiredTotal }
    }

    /// Makes the loaded set match `plugins` (Config.plugins): loads new
    /// plugins, changed files and changed `[plugin.config]` tables, and
    /// retires removed plugins. A plugin that fails to load keeps its
    /// previous version serving (or stays absent); its error is in ``status``.
    @discardableResult
    public func apply(_ plugins: [PluginConfig]) -> [PluginStatus] {
        operationLock.withLock {
            guard !slots.withLockedValue({ $0.shutDown }) else { return }
            var seen = Set<String>()
            let plugins = plugins.filter { seen.insert($0.name).inserted }  // first of a duplicated name wins
            let wanted = seen
            let removed = slots.withLockedValue { s -> [(String, LoadedPlugin?)] in
                let gone = s.byName.filter { !wanted.contains($0.key) }.map { ($0.key, $0.value.current) }
                for (name, _) in gone { s.byName[name] = nil }
                s.order = plugins.map(\.name)
                return gone
            }
            for (name, plugin) in removed {
                serving.withLockedValue { _ = $0.removeValue(forKey: name) }
                if let plugin {
                    plugin.context.lifecycle.retire(successor: nil)
                    countRetired(name)
                    logger.info("plugin removed from the config", metadata: ["plugin": "\(name)", "version": "\(plugin.version)"])
                }
            }
            for config in plugins {
                let existing = slots.withLockedValue { $0.byName[config.name] }
                guard var slot = existing else {
                    slots.withLockedValue { $0.byName[config.name] = Slot(config: config) }
                    loadNow(config.name, keepIfSameFile: false)
                    continue
                }
                let fileOrSettingsChanged = slot.config.path != config.path || slot.config.config != config.config
                slot.config = config
                slots.withLockedValue { $0.byName[config.name]?.config = config }
                if fileOrSettingsChanged {
                    loadNow(config.name, keepIfSameFile: false)
                } else if slot.current == nil || PluginFiles.stamp(config.path) != slot.lastStamp {
                    loadNow(config.name, keepIfSameFile: true)
                }
            }
        }
        return status
    }

    /// Re-reads every configured plugin file now (SIGHUP, POST
    /// /api/optimized/reload): a file whose content hash changed loads as a
    /// new version; a plugin with no serving version is retried.
    @discardableResult
    public func reloadAll() -> [PluginStatus] {
        operationLock.withLock {
            for name in slots.withLockedValue({ $0.shutDown ? [] : $0.order }) {
                loadNow(name, keepIfSameFile: true)
            }
        }
        return status
    }

    /// Cheap check for changed files, meant to run every second or so: a file
    /// whose stat (inode, size, mtime, ctime) changed is loaded once it is
    /// stable — unchanged across polls for ``stableInterval``, or last
    /// modified longer ago than that and a complete ELF file. A file still
    /// being written is left for a later poll.
    @discardableResult
    public func pollFiles() -> [PluginStatus] {
        operationLock.withLock {
            for name in slots.withLockedValue({ $0.shutDown ? [] : $0.order }) {
                guard let slot = slots.withLockedValue({ $0.byName[name] }) else { continue }
                guard let stamp = PluginFiles.stamp(slot.config.path) else {
                    continue  // missing (mid-rebuild?): keep serving, look again later
                }
                if stamp == slot.lastStamp {
                    if slot.candidate != nil { slots.withLockedValue { $0.byName[name]?.candidate = nil } }
                    continue
                }
                let now = NIODeadline.now()
                if let candidate = slot.candidate, candidate.stamp == stamp, now - candidate.since >= Self.stableInterval {
                    loadNow(name, keepIfSameFile: true)
                    continue
                }
                if slot.candidate?.stamp != stamp {
                    slots.withLockedValue { $0.byName[name]?.candidate = (stamp, now) }
                }
                let ageNanos = PluginFiles.wallClockNanos() &- stamp.mtimeNanos  // wrapping: mtime is whatever the file says
                if ageNanos >= Self.stableInterval.nanoseconds {
                    // Looks settled already: load unless it is still incomplete.
                    loadNow(name, keepIfSameFile: true, tentative: true)
                }
            }
        }
        return status
    }

    /// Retires every plugin: each is destroyed once idle. Libraries stay
    /// mapped. Later calls to apply/reload/poll do nothing.
    public func shutdown() {
        operationLock.withLock {
            let plugins = slots.withLockedValue { s -> [LoadedPlugin] in
                s.shutDown = true
                return s.order.compactMap { s.byName[$0]?.current }
            }
            serving.withLockedValue { $0.removeAll() }
            for plugin in plugins { plugin.context.lifecycle.retire(successor: nil) }
        }
    }

    // MARK: - Loading

    /// Loads `name`'s configured file and swaps it in. With `keepIfSameFile`,
    /// a file whose hash equals the serving version's is not reloaded. With
    /// `tentative`, a file that looks incomplete (not ELF, truncated, I/O) is
    /// not recorded as refused: it is looked at again on the next poll.
    /// Must hold `operationLock`.
    private func loadNow(_ name: String, keepIfSameFile: Bool, tentative: Bool = false) {
        guard let slot = slots.withLockedValue({ $0.byName[name] }) else { return }
        let config = slot.config
        let file: (bytes: [UInt8], stamp: FileStamp)
        do {
            file = try PluginFiles.readFile(config.path)
        } catch {
            if tentative { return }
            record(name, error: error, stamp: PluginFiles.stamp(config.path))
            return
        }
        let sha = PluginLoader.hexDigest(file.bytes)
        if keepIfSameFile, let current = slot.current, current.sha256 == sha, current.sourcePath == config.path {
            slots.withLockedValue {
                $0.byName[name]?.lastStamp = file.stamp
                $0.byName[name]?.candidate = nil
                $0.byName[name]?.error = nil
            }
            return
        }
        let result = PluginLoader.load(
            config, bytes: file.bytes, sha256: sha, services: services, stateDirectory: stateDirectory, logger: logger
        )
        switch result {
        case .failure(let error):
            if tentative && [.notELF, .truncated, .io].contains(error.kind) { return }
            record(name, error: error, stamp: file.stamp)
        case .success(let plugin):
            let previous = slots.withLockedValue { s -> LoadedPlugin? in
                let previous = s.byName[name]?.current
                s.byName[name]?.current = plugin
                s.byName[name]?.error = nil
                s.byName[name]?.lastStamp = file.stamp
                s.byName[name]?.candidate = nil
                if previous != nil {
                    s.byName[name]?.retiredVersions += 1
                }
                return previous
            }
            serving.withLockedValue { $0[name] = plugin }
            Counter(label: "turnout_plugin_loads_total", dimensions: [("plugin", name), ("result", "ok")]).increment()
            if let previous {
                previous.context.lifecycle.retire(successor: plugin)
                countRetired(name)
                logger.info(
                    "plugin reloaded",
                    metadata: [
                        "plugin": "\(name)", "version": "\(plugin.version)", "previous": "\(previous.version)",
                        "sha256": "\(plugin.sha256.prefix(16))", "inFlightInPrevious": "\(previous.inFlight)",
                    ]
                )
            } else {
                logger.info("plugin loaded", metadata: ["plugin": "\(name)", "version": "\(plugin.version)", "sha256": "\(plugin.sha256.prefix(16))"])
            }
        }
    }

    private func record(_ name: String, error: PluginLoadError, stamp: FileStamp?) {
        let serving = slots.withLockedValue { s -> String? in
            s.byName[name]?.error = error.message
            s.byName[name]?.lastStamp = stamp
            s.byName[name]?.candidate = nil
            return s.byName[name]?.current?.version
        }
        Counter(label: "turnout_plugin_loads_total", dimensions: [("plugin", name), ("result", "error")]).increment()
        logger.error(
            "plugin refused; \(serving.map { "version \($0) keeps serving" } ?? "its routes go to the legacy API")",
            metadata: ["plugin": "\(name)", "kind": "\(error.kind)", "error": "\(error.message)"]
        )
    }

    private func countRetired(_ name: String) {
        slots.withLockedValue { $0.retiredTotal += 1 }
        Counter(label: "turnout_plugin_versions_retired_total", dimensions: [("plugin", name)]).increment()
    }
}
