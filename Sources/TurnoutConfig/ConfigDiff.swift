// What changed between two configs, by dotted key (hot reload logs it and decides restarts).

extension Config {
    /// Keys whose change cannot be applied to a running listener.
    public static let restartRequiredKeys: Set<String> = ["server.listen", "server.tls_cert", "server.tls_key", "cache.redis", "coordination.sink_url", "monitoring.metrics_interval_ms"]

    /// The dotted keys whose values differ from `other`, in SPEC order, e.g.
    /// `["server.listen", "rollout.percent", "plugin[message-cache].routes"]`.
    ///
    /// Plugins are compared by name: `plugin[NAME]` when one was added or removed,
    /// `plugin[NAME].path|routes|config` when it changed, and `plugins.order` when the
    /// same plugins appear in another order (the first matching route wins).
    /// A TLS certificate rewritten in place at the same path is not a change here.
    public func diff(_ other: Config) -> [String] {
        var out: [String] = []
        func check<T: Equatable>(_ key: String, _ a: T, _ b: T) {
            if a != b { out.append(key) }
        }
        let a = self, b = other

        check("server.listen", a.server.listen, b.server.listen)
        check("server.admin_token", a.server.adminToken, b.server.adminToken)
        check("server.max_body_bytes", a.server.maxBodyBytes, b.server.maxBodyBytes)
        check("server.idle_timeout_ms", a.server.idleTimeoutMs, b.server.idleTimeoutMs)
        check("server.debug_headers", a.server.debugHeaders, b.server.debugHeaders)
        check("server.tls_cert", a.server.tlsCert, b.server.tlsCert)
        check("server.tls_key", a.server.tlsKey, b.server.tlsKey)

        check("upstream.url", a.upstream.url, b.upstream.url)
        check("upstream.connect_timeout_ms", a.upstream.connectTimeoutMs, b.upstream.connectTimeoutMs)
        check("upstream.timeout_ms", a.upstream.timeoutMs, b.upstream.timeoutMs)
        check("upstream.max_connections", a.upstream.maxConnections, b.upstream.maxConnections)

        check("rollout.percent", a.rollout.percent, b.rollout.percent)
        check("rollout.sticky", a.rollout.sticky, b.rollout.sticky)
        check("rollout.allow_override", a.rollout.allowOverride, b.rollout.allowOverride)

        check("fallback.latency_budget_ms", a.fallback.latencyBudgetMs, b.fallback.latencyBudgetMs)
        check("fallback.on_status", a.fallback.onStatus, b.fallback.onStatus)

        check("rollback.error_rate", a.rollback.errorRate, b.rollback.errorRate)
        check("rollback.latency_factor", a.rollback.latencyFactor, b.rollback.latencyFactor)
        check("rollback.window_s", a.rollback.windowS, b.rollback.windowS)
        check("rollback.min_requests", a.rollback.minRequests, b.rollback.minRequests)

        check("migration.start_percent", a.migration.startPercent, b.migration.startPercent)
        check("migration.step_percent", a.migration.stepPercent, b.migration.stepPercent)
        check("migration.step_interval_s", a.migration.stepIntervalS, b.migration.stepIntervalS)

        check("cache.enabled", a.cache.enabled, b.cache.enabled)
        check("cache.default_ttl_s", a.cache.defaultTtlS, b.cache.defaultTtlS)
        check("cache.max_memory_bytes", a.cache.maxMemoryBytes, b.cache.maxMemoryBytes)
        check("cache.compression_threshold_bytes", a.cache.compressionThresholdBytes, b.cache.compressionThresholdBytes)
        check("cache.snapshot_path", a.cache.snapshotPath, b.cache.snapshotPath)
        check("cache.stale_grace_s", a.cache.staleGraceS, b.cache.staleGraceS)
        check("cache.versioning", a.cache.versioning, b.cache.versioning)
        check("cache.redis", a.cache.redis, b.cache.redis)

        check("coordination.batch_size", a.coordination.batchSize, b.coordination.batchSize)
        check("coordination.batch_interval_ms", a.coordination.batchIntervalMs, b.coordination.batchIntervalMs)
        check("coordination.retry_attempts", a.coordination.retryAttempts, b.coordination.retryAttempts)
        check("coordination.sink_url", a.coordination.sinkURL?.string, b.coordination.sinkURL?.string)
        check("coordination.idempotency_ttl_s", a.coordination.idempotencyTtlS, b.coordination.idempotencyTtlS)

        check("push.enabled", a.push.enabled, b.push.enabled)
        check("push.path", a.push.path, b.push.path)
        check("push.jwt_secret", a.push.jwtSecret, b.push.jwtSecret)
        check("push.heartbeat_interval_ms", a.push.heartbeatIntervalMs, b.push.heartbeatIntervalMs)
        check("push.max_connections", a.push.maxConnections, b.push.maxConnections)
        check("push.idle_cleanup_interval_ms", a.push.idleCleanupIntervalMs, b.push.idleCleanupIntervalMs)

        check("monitoring.metrics_interval_ms", a.monitoring.metricsIntervalMs, b.monitoring.metricsIntervalMs)
        let ta = a.monitoring.thresholds, tb = b.monitoring.thresholds
        check("monitoring.thresholds.cache_hit_rate", ta.cacheHitRate, tb.cacheHitRate)
        check("monitoring.thresholds.response_time_ms", ta.responseTimeMs, tb.responseTimeMs)
        check("monitoring.thresholds.error_rate", ta.errorRate, tb.errorRate)
        check("monitoring.thresholds.memory_usage", ta.memoryUsage, tb.memoryUsage)

        // Plugins, by name.
        var otherByName: [String: PluginConfig] = [:]
        for p in b.plugins { otherByName[p.name] = p }
        var selfNames: Set<String> = []
        for p in a.plugins {
            selfNames.insert(p.name)
            guard let q = otherByName[p.name] else {
                out.append("plugin[\(p.name)]")
                continue
            }
            check("plugin[\(p.name)].path", p.path, q.path)
            check("plugin[\(p.name)].routes", p.routes, q.routes)
            check("plugin[\(p.name)].config", p.config, q.config)
        }
        for q in b.plugins where !selfNames.contains(q.name) {
            out.append("plugin[\(q.name)]")
        }
        let common = Set(a.plugins.map(\.name)).intersection(b.plugins.map(\.name))
        if a.plugins.map(\.name).filter(common.contains) != b.plugins.map(\.name).filter(common.contains) {
            out.append("plugins.order")
        }
        return out
    }
}
