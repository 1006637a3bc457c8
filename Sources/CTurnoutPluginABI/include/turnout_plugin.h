/*
 * turnout_plugin.h — the whole contract between Turnout and its plugins.
 *
 * A plugin is a shared library exporting ONE symbol:
 *
 *     const turnout_plugin_v1 *turnout_plugin_entry_v1(uint32_t host_abi_major,
 *                                                      uint32_t host_abi_minor);
 *
 * The host calls it once per load, checks the returned descriptor's
 * `abi_major` (must equal TURNOUT_ABI_MAJOR), `struct_size` (at least the
 * size of the v1.0 descriptor; a newer minor may append fields) and `name`
 * (must equal the `name` in proxy.conf), then calls `init` with the host
 * services table. A plugin that returns NULL from the entry, has another
 * major, or fails `init` is refused; the previous version (or the legacy
 * lane) keeps serving its routes.
 *
 * Rules for every item below (after Envoy's dynamic-modules abi.h):
 *  - Plain C, libc only. No Swift (or any other language's) types cross.
 *  - Naming: types `turnout_*`, hooks `on_*` in turnout_plugin_v1, host
 *    callbacks are the function pointers of turnout_host_v1.
 *  - OWNERSHIP is stated on every pointer. "Borrowed" means valid only for
 *    the duration of the call that handed it over: copy what you keep.
 *  - THREADING is stated on every hook and callback.
 *  - Bodies are bytes (turnout_bytes), never NUL-terminated strings.
 *  - A trap (abort, failed assertion, Swift fatalError / force unwrap) in
 *    plugin code kills the whole process: report failures with TURNOUT_ERROR
 *    or `fail` instead, and the host falls back to the legacy API.
 */
#ifndef TURNOUT_PLUGIN_H
#define TURNOUT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version. A different major is refused; a newer minor is accepted. */
#define TURNOUT_ABI_MAJOR 1u
#define TURNOUT_ABI_MINOR 1u
/** The one symbol a plugin exports. */
#define TURNOUT_PLUGIN_ENTRY_SYMBOL "turnout_plugin_entry_v1"

/** A view of bytes. OWNERSHIP: whoever hands it over keeps ownership; the
 *  receiver borrows it for the duration of the call. `ptr` may be NULL when
 *  `len` is 0. */
typedef struct turnout_bytes {
    const uint8_t *ptr;
    size_t len;
} turnout_bytes;

/** One header field. Names are lower-case when the host hands them over. */
typedef struct turnout_header {
    turnout_bytes name;
    turnout_bytes value;
} turnout_header;

/** A request. OWNERSHIP: borrowed (host-owned when passed to a hook;
 *  plugin-owned when passed to `legacy_call`, which copies it). */
typedef struct turnout_request {
    turnout_bytes method;        /**< "GET", "POST", … */
    turnout_bytes target;        /**< path and query as received: "/api/messages?conversation_id=1" */
    const turnout_header *headers;
    size_t header_count;
    turnout_bytes body;          /**< the whole body (requests to plugins are buffered) */
    /** Who is calling, for cache isolation: a hex digest of the request's
     *  Authorization and Cookie headers, empty when it has neither. Set by
     *  the host on hook calls; ignored in `legacy_call`. */
    turnout_bytes identity;
} turnout_request;

/** A response. OWNERSHIP: borrowed, as for turnout_request. */
typedef struct turnout_response {
    uint16_t status;
    const turnout_header *headers;
    size_t header_count;
    turnout_bytes body;
} turnout_response;

/** One in-flight request handed to a plugin. OWNERSHIP: host-owned and
 *  opaque. It stays valid until the plugin calls `respond` or `fail` on it
 *  (exactly once), even if the host has stopped waiting (latency budget) —
 *  a late answer is discarded safely. */
typedef struct turnout_exchange turnout_exchange;

/** What `on_request` returns. */
typedef enum turnout_result {
    /** `respond` or `fail` was already called for this exchange. */
    TURNOUT_RESPONDED = 0,
    /** The plugin will call `respond` or `fail` later, from any thread. */
    TURNOUT_PENDING = 1,
    /** The plugin declines: the host sends the request to the legacy API
     *  unchanged (a pass-through; not counted as a failure). `respond`/`fail`
     *  must not be called. */
    TURNOUT_DECLINE = 2,
    /** The plugin failed: the host falls back to the legacy API. `respond`/
     *  `fail` must not be called. */
    TURNOUT_ERROR = 3
} turnout_result;

/** Which lane carried an exchange (for `on_observe`). */
typedef enum turnout_lane {
    TURNOUT_LANE_LEGACY = 0,
    TURNOUT_LANE_OPTIMIZED = 1
} turnout_lane;

typedef enum turnout_log_level {
    TURNOUT_LOG_DEBUG = 0,
    TURNOUT_LOG_INFO = 1,
    TURNOUT_LOG_WARNING = 2,
    TURNOUT_LOG_ERROR = 3
} turnout_log_level;

/** Receives bytes lent for the duration of the call. */
typedef void (*turnout_bytes_sink)(void *user, turnout_bytes value);

/** Completion of `cache_fetch` (ABI 1.1). Called exactly once, on any
 *  thread. `found` is 1 on a hit (then `value` is the value, borrowed for the
 *  call) and 0 on a miss. */
typedef void (*turnout_fetch_callback)(void *user, int32_t found, turnout_bytes value);

/** Completion of `legacy_call`. Called exactly once, on any thread.
 *  `error` is 0 on success (then `response` is set, borrowed for the call)
 *  or non-zero when the legacy API could not be reached or timed out (then
 *  `response` is NULL and `message` says why, borrowed). */
typedef void (*turnout_legacy_callback)(void *user, int32_t error,
                                        const turnout_response *response,
                                        turnout_bytes message);

/**
 * Services the host offers a plugin instance. OWNERSHIP: host-owned, valid
 * from `init` until after `destroy` returns; keep the pointer. Every callback
 * takes `host_ctx` (this table's own field) or an exchange first.
 * THREADING: every callback may be called from any thread, concurrently.
 */
typedef struct turnout_host_v1 {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size;        /**< sizeof(turnout_host_v1) as the host built it */
    uint32_t reserved;
    void *host_ctx;              /**< OWNERSHIP: host-owned, opaque */

    /** Completes `ex` with a response (copied before return). Exactly once
     *  per exchange, `respond` or `fail`. */
    void (*respond)(turnout_exchange *ex, const turnout_response *response);
    /** Completes `ex` as failed; the host falls back to the legacy API when
     *  the request was not yet sent upstream by `legacy_call`. */
    void (*fail)(turnout_exchange *ex, turnout_bytes message);

    /** Sends a request to the legacy API (the `upstream` of proxy.conf) and
     *  calls `callback(user, …)` once with its response. `ex` ties the call
     *  to the client request (the host then never replays that request on
     *  the legacy API once a non-idempotent call went out); it may be NULL
     *  for background calls. `request` is copied before return. */
    void (*legacy_call)(void *host_ctx, turnout_exchange *ex, const turnout_request *request,
                        turnout_legacy_callback callback, void *user);

    /** Looks a key up in the host's cache. On a hit calls `sink(user, value)`
     *  once, synchronously, and returns 1; returns 0 on a miss. */
    int32_t (*cache_get)(void *host_ctx, turnout_bytes key, turnout_bytes_sink sink, void *user);
    /** Stores a value (copied) for `ttl_s` seconds (0 = the configured
     *  default) under `key`, tagged with `tags` for invalidation. Returns 1
     *  if stored, 0 if refused (cache disabled, value over the budget). */
    int32_t (*cache_set)(void *host_ctx, turnout_bytes key, turnout_bytes value, uint32_t ttl_s,
                         const turnout_bytes *tags, size_t tag_count);
    /** Drops every key matching a glob (`*` and `?`); returns how many. */
    size_t (*cache_invalidate)(void *host_ctx, turnout_bytes pattern);
    /** Drops every key carrying `tag`; returns how many. */
    size_t (*cache_invalidate_tag)(void *host_ctx, turnout_bytes tag);

    /** Enqueues an event for the coordinator (type such as
     *  "message.created", payload JSON). Returns 1 if queued, 0 if shed. */
    int32_t (*enqueue)(void *host_ctx, turnout_bytes type, turnout_bytes payload_json);
    /** Publishes to a push channel ("conversation:42"). Returns the number of
     *  local subscribers reached, or -1 when push is disabled. */
    int32_t (*publish)(void *host_ctx, turnout_bytes channel, turnout_bytes type, turnout_bytes data_json);

    /** Logs through the host's logger, tagged with the plugin's name. */
    void (*log)(void *host_ctx, uint32_t level, turnout_bytes message);
    /** Adds `delta` to the counter `turnout_plugin_<name>_total` (name:
     *  [a-z0-9_], at most 32 distinct names per plugin). */
    void (*count)(void *host_ctx, turnout_bytes name, int64_t delta);
    /** The plugin's `[plugin.config]` table as a JSON object, via `sink`
     *  (synchronously). */
    void (*config_json)(void *host_ctx, turnout_bytes_sink sink, void *user);

    /* ---- ABI 1.1: present when struct_size >= offsetof(.., cache_fill_check) + sizeof(void *).
     *      A plugin built for 1.1 checks struct_size before calling these. ---- */

    /** For stale-if-error, after the legacy API failed: like `cache_get`, but
     *  also answers from an entry whose TTL ran out less than the stale grace
     *  ago. Returns 1 (fresh) or 2 (stale) after calling `sink` once,
     *  synchronously; 0 when there is nothing. Local memory only. */
    int32_t (*cache_get_stale)(void *host_ctx, turnout_bytes key, turnout_bytes_sink sink, void *user);
    /** Looks `key` up in every tier: local memory, then (with `cache.redis`)
     *  the shared Redis tier. Calls `callback(user, …)` exactly once:
     *  synchronously on a local hit or miss without Redis, otherwise later
     *  from any thread. A Redis hit is copied into local memory. Never waits
     *  on a Redis that is down: that is a miss. */
    void (*cache_fetch)(void *host_ctx, turnout_bytes key, turnout_fetch_callback callback, void *user);
    /** Starts a fenced fill of `key`: call BEFORE asking the legacy API.
     *  Returns a ticket for `cache_fill_commit`/`cache_fill_cancel`, or 0
     *  when the cache is disabled. */
    uint64_t (*cache_fill_begin)(void *host_ctx, turnout_bytes key);
    /** Stores the fill (value copied) only if nothing invalidated its key,
     *  one of `tags`, or a pattern matching it since `cache_fill_begin` — on
     *  this instance or, with Redis, another — so a fill that read the legacy
     *  API before a write can never store what the write made stale.
     *  Returns 1 if stored, 0 if not (fenced off, refused, unknown ticket).
     *  A ticket commits at most once. */
    int32_t (*cache_fill_commit)(void *host_ctx, uint64_t ticket, turnout_bytes value, uint32_t ttl_s,
                                 const turnout_bytes *tags, size_t tag_count);
    /** Abandons a fill (the legacy API failed, or the answer is not to be
     *  cached). */
    void (*cache_fill_cancel)(void *host_ctx, uint64_t ticket);
    /** Returns 1 when nothing that would fence the fill off (an invalidation
     *  of its key, one of `tags`, or a matching pattern, here or on another
     *  instance) happened since `cache_fill_begin`, else 0. Does not use up
     *  the ticket. Lets a plugin that shares one legacy answer among
     *  concurrent readers tell whether a write came in meanwhile (then the
     *  readers that joined late must not get the shared answer). */
    int32_t (*cache_fill_check)(void *host_ctx, uint64_t ticket, const turnout_bytes *tags, size_t tag_count);
} turnout_host_v1;

/**
 * What the entry point returns. OWNERSHIP: plugin-owned, static; must stay
 * valid while the library is loaded (the host copies name and version).
 */
typedef struct turnout_plugin_v1 {
    uint32_t abi_major;          /**< TURNOUT_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;          /**< TURNOUT_ABI_MINOR the plugin was built with */
    uint32_t struct_size;        /**< sizeof(turnout_plugin_v1) as the plugin built it */
    uint32_t reserved;
    const char *name;            /**< NUL-terminated; must equal the proxy.conf name */
    const char *version;         /**< NUL-terminated, e.g. "1.2.0" */

    /** Creates an instance. THREADING: called once, on a host thread that
     *  is not an event loop, before any other hook. Returns the instance
     *  (OWNERSHIP: plugin-owned, opaque to the host) or NULL with a message
     *  written (NUL-terminated, truncated) into `error`. */
    void *(*init)(const turnout_host_v1 *host, char *error, size_t error_capacity);

    /** Destroys an instance once no request is in it any more (after a
     *  reload swapped in a new version, or at shutdown). The library itself
     *  stays mapped. THREADING: any thread, never concurrently with a hook.
     *  May be NULL. */
    void (*destroy)(void *instance);

    /** A request on one of the plugin's routes, routed to the optimized
     *  lane. THREADING: called on an event-loop thread, concurrently from
     *  several: must not block (use `legacy_call` and return
     *  TURNOUT_PENDING). `request` is borrowed for this call only. */
    int32_t (*on_request)(void *instance, turnout_exchange *ex, const turnout_request *request);

    /** Sees every finished request on the plugin's routes, in either lane,
     *  before its response is returned to the client (so a write can
     *  invalidate what it made stale first). THREADING: event-loop thread;
     *  must be quick and must not block. Arguments borrowed. May be NULL. */
    void (*on_observe)(void *instance, const turnout_request *request,
                       const turnout_response *response, uint32_t lane);

    /* ---- ABI 1.1: read by the host only when struct_size covers it (a 1.0
     *      plugin's descriptor ends above; it is treated as 0). ---- */

    /** TURNOUT_OBSERVE_* flags for `on_observe`. */
    uint32_t observe_flags;
} turnout_plugin_v1;

/** `observe_flags`: call `on_observe` only for requests that may change
 *  state (every method but GET, HEAD and OPTIONS). Reads on the plugin's
 *  routes are then not buffered or copied for the hook — in the legacy lane
 *  they stream like any other request. */
#define TURNOUT_OBSERVE_WRITES_ONLY 1u

/** The type of the entry point. */
typedef const turnout_plugin_v1 *(*turnout_plugin_entry_fn)(uint32_t host_abi_major,
                                                            uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* TURNOUT_PLUGIN_H */
