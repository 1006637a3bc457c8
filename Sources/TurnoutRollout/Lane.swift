/// TurnoutRollout owns the decisions that move traffic between the lanes over
/// time, as pure values: what the lanes did recently (`LatencyHistogram`,
/// `SlidingWindow`), whether that is bad enough to roll back (`RollbackPolicy`),
/// how many fallbacks the legacy API can be asked to absorb (`RetryBudget`), and
/// where a migration stands (`MigrationMachine`).
///
/// Nothing here does I/O, takes a lock or reads a clock. Time is a `Double` of
/// seconds from a monotonic clock, passed in by the caller, so every behaviour is
/// a table of `(input, now) → output` in the tests. The caller owns the
/// concurrency (one lock or actor around these values) and the side effects (the
/// `MigrationAction`s a machine returns).

/// The two lanes a plugin-routed request can take. Declared here rather than
/// imported from TurnoutRouting so this module depends on nothing but the config.
public enum Lane: String, Sendable, CaseIterable {
    case legacy
    case optimized
}
