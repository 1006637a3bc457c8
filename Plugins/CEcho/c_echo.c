/*
 * c-echo — a Turnout plugin in plain C (libc only), proving the ABI in
 * turnout_plugin.h is language-neutral. Also the host's test subject.
 *
 * Behaviour, chosen by the request header `x-cecho`:
 *   (absent)   respond synchronously: 200 application/json
 *              {"plugin":"c-echo","version":"…","method":"…","target":"…"}
 *   relay      send the request to the legacy API with `legacy_call`, return
 *              TURNOUT_PENDING and respond from the callback with the legacy
 *              response plus `x-cecho-relayed: 1` (or `fail` on an error)
 *   decline    return TURNOUT_DECLINE
 *   error      return TURNOUT_ERROR
 *   fail       call `fail` synchronously, return TURNOUT_RESPONDED
 *   thread     return TURNOUT_PENDING and respond ~20 ms later from a thread
 *              of the plugin's own
 *   late-relay return TURNOUT_PENDING; ~400 ms later, from a thread of its
 *              own, `legacy_call` POST /cecho/late for this exchange and
 *              respond as relay does
 *   config     respond with the plugin's config JSON
 *   services   call every host service once, respond with what they returned
 *   double     misbehave: respond twice, then return TURNOUT_DECLINE
 *   forget     misbehave: return TURNOUT_RESPONDED without responding
 * on_observe invalidates the cache tag "observed:<lane>:<status>".
 * A config containing "fail_init":true makes init fail.
 *
 * Version: CECHO_VERSION (default "1.0.0"), e.g.
 *   cc -shared -fPIC -DCECHO_VERSION='"2.0.0"' -I Sources/CTurnoutPluginABI/include \
 *      Plugins/CEcho/c_echo.c -o x.so
 */
#include "turnout_plugin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CECHO_VERSION
#define CECHO_VERSION "1.0.0"
#endif

#define EXPORT __attribute__((visibility("default")))

typedef struct cecho {
    const turnout_host_v1 *host;
} cecho;

/* ---- small helpers ---------------------------------------------------- */

static turnout_bytes bytes_of(const char *s) {
    turnout_bytes b = { (const uint8_t *)s, strlen(s) };
    return b;
}

static int bytes_eq(turnout_bytes b, const char *s) {
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void buf_put(buf *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return; /* out of memory: the text is cut short */
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_json_string(buf *b, const uint8_t *p, size_t n) {
    buf_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_put(b, esc, 6);
        } else {
            buf_put(b, &c, 1);
        }
    }
    buf_str(b, "\"");
}

static void buf_int(buf *b, long long v) {
    char t[32];
    snprintf(t, sizeof t, "%lld", v);
    buf_str(b, t);
}

static const turnout_header *find_header(const turnout_request *r, const char *name) {
    for (size_t i = 0; i < r->header_count; i++)
        if (bytes_eq(r->headers[i].name, name)) return &r->headers[i];
    return NULL;
}

static void respond_json(const cecho *self, turnout_exchange *ex, uint16_t status, const buf *body) {
    turnout_header h[1] = { { bytes_of("content-type"), bytes_of("application/json") } };
    turnout_response resp = { status, h, 1, { (const uint8_t *)body->p, body->len } };
    self->host->respond(ex, &resp);
}

static void sink_to_buf(void *user, turnout_bytes value) { buf_put((buf *)user, value.ptr, value.len); }

/* ---- relay: legacy_call and respond from the callback ----------------- */

typedef struct relay_ctx {
    const turnout_host_v1 *host;
    turnout_exchange *ex;
} relay_ctx;

static void relay_done(void *user, int32_t error, const turnout_response *response, turnout_bytes message) {
    relay_ctx *ctx = user;
    if (error != 0 || response == NULL) {
        buf m = { 0 };
        buf_str(&m, "c-echo: legacy call failed: ");
        buf_put(&m, message.ptr, message.len);
        ctx->host->fail(ctx->ex, (turnout_bytes){ (const uint8_t *)m.p, m.len });
        free(m.p);
    } else {
        size_t n = response->header_count + 1;
        turnout_header *h = calloc(n, sizeof *h);
        if (h == NULL) {
            ctx->host->fail(ctx->ex, bytes_of("c-echo: out of memory"));
        } else {
            if (response->header_count) memcpy(h, response->headers, response->header_count * sizeof *h);
            h[n - 1].name = bytes_of("x-cecho-relayed");
            h[n - 1].value = bytes_of("1");
            turnout_response out = { response->status, h, n, response->body };
            ctx->host->respond(ctx->ex, &out);
            free(h);
        }
    }
    free(ctx);
}

/* ---- thread: respond later from a thread of our own ------------------- */

typedef struct thread_ctx {
    const turnout_host_v1 *host;
    turnout_exchange *ex;
} thread_ctx;

static void *thread_main(void *arg) {
    thread_ctx *ctx = arg;
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    buf body = { 0 };
    buf_str(&body, "{\"plugin\":\"c-echo\",\"from\":\"thread\"}");
    turnout_header h[1] = { { bytes_of("content-type"), bytes_of("application/json") } };
    turnout_response resp = { 200, h, 1, { (const uint8_t *)body.p, body.len } };
    ctx->host->respond(ctx->ex, &resp);
    free(body.p);
    free(ctx);
    return NULL;
}

/* ---- late-relay: legacy_call from a thread, after a while ------------- */

static void *late_relay_main(void *arg) {
    relay_ctx *ctx = arg;
    /* Long enough that a test's claimFallback() wins even on a loaded CI box. */
    struct timespec ts = { 0, 400 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    turnout_request late = { bytes_of("POST"), bytes_of("/cecho/late"), NULL, 0, { NULL, 0 }, { NULL, 0 } };
    ctx->host->legacy_call(ctx->host->host_ctx, ctx->ex, &late, relay_done, ctx); /* relay_done frees ctx */
    return NULL;
}

/* ---- hooks ------------------------------------------------------------ */

static void *cecho_init(const turnout_host_v1 *host, char *error, size_t error_capacity) {
    buf config = { 0 };
    host->config_json(host->host_ctx, sink_to_buf, &config);
    int fail = config.p != NULL && strstr(config.p, "\"fail_init\":true") != NULL;
    free(config.p);
    if (fail) {
        snprintf(error, error_capacity, "c-echo: fail_init is set in [plugin.config]");
        return NULL;
    }
    cecho *self = calloc(1, sizeof *self);
    if (self == NULL) {
        snprintf(error, error_capacity, "c-echo: out of memory");
        return NULL;
    }
    self->host = host;
    host->log(host->host_ctx, TURNOUT_LOG_INFO, bytes_of("c-echo " CECHO_VERSION " init"));
    return self;
}

static void cecho_destroy(void *instance) {
    cecho *self = instance;
    self->host->log(self->host->host_ctx, TURNOUT_LOG_INFO, bytes_of("c-echo " CECHO_VERSION " destroyed"));
    free(self);
}

static int32_t services_mode(cecho *self, turnout_exchange *ex, const turnout_request *r) {
    const turnout_host_v1 *host = self->host;
    void *c = host->host_ctx;
    buf got = { 0 }, config = { 0 }, body = { 0 };
    turnout_bytes tags[2] = { bytes_of("conversation:1"), bytes_of("c-echo") };

    host->log(c, TURNOUT_LOG_WARNING, bytes_of("c-echo services mode"));
    host->count(c, bytes_of("services_calls"), 2);
    int32_t stored = host->cache_set(c, bytes_of("c-echo:key"), r->body, 30, tags, 2);
    int32_t hit = host->cache_get(c, bytes_of("c-echo:key"), sink_to_buf, &got);
    int32_t miss = host->cache_get(c, bytes_of("c-echo:absent"), sink_to_buf, &got);
    size_t by_pattern = host->cache_invalidate(c, bytes_of("c-echo:*"));
    size_t by_tag = host->cache_invalidate_tag(c, bytes_of("conversation:1"));
    int32_t queued = host->enqueue(c, bytes_of("message.created"), bytes_of("{\"id\":1}"));
    int32_t reached = host->publish(c, bytes_of("conversation:1"), bytes_of("message.created"), bytes_of("{\"id\":1}"));
    host->config_json(c, sink_to_buf, &config);

    buf_str(&body, "{\"stored\":");
    buf_int(&body, stored);
    buf_str(&body, ",\"hit\":");
    buf_int(&body, hit);
    buf_str(&body, ",\"miss\":");
    buf_int(&body, miss);
    buf_str(&body, ",\"got\":");
    buf_json_string(&body, (const uint8_t *)got.p, got.len);
    buf_str(&body, ",\"by_pattern\":");
    buf_int(&body, (long long)by_pattern);
    buf_str(&body, ",\"by_tag\":");
    buf_int(&body, (long long)by_tag);
    buf_str(&body, ",\"queued\":");
    buf_int(&body, queued);
    buf_str(&body, ",\"reached\":");
    buf_int(&body, reached);
    buf_str(&body, ",\"config\":");
    if (config.len) buf_put(&body, config.p, config.len); else buf_str(&body, "null");
    buf_str(&body, "}");
    respond_json(self, ex, 200, &body);
    free(got.p);
    free(config.p);
    free(body.p);
    return TURNOUT_RESPONDED;
}

/* Answers an exchange from a detached thread (`ctx` is freed by `main` or here
 * on failure): TURNOUT_PENDING, or TURNOUT_ERROR when no thread could start. */
static int32_t start_detached(void *(*main)(void *), void *ctx) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, main, ctx);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(ctx);
        return TURNOUT_ERROR;
    }
    return TURNOUT_PENDING;
}

static int32_t cecho_on_request(void *instance, turnout_exchange *ex, const turnout_request *r) {
    cecho *self = instance;
    const turnout_header *mode = find_header(r, "x-cecho");
    turnout_bytes m = mode ? mode->value : (turnout_bytes){ NULL, 0 };

    if (mode == NULL || bytes_eq(m, "")) {
        buf body = { 0 };
        buf_str(&body, "{\"plugin\":\"c-echo\",\"version\":\"" CECHO_VERSION "\",\"method\":");
        buf_json_string(&body, r->method.ptr, r->method.len);
        buf_str(&body, ",\"target\":");
        buf_json_string(&body, r->target.ptr, r->target.len);
        buf_str(&body, "}");
        respond_json(self, ex, 200, &body);
        free(body.p);
        return TURNOUT_RESPONDED;
    }
    if (bytes_eq(m, "relay")) {
        relay_ctx *ctx = malloc(sizeof *ctx);
        if (ctx == NULL) return TURNOUT_ERROR;
        ctx->host = self->host;
        ctx->ex = ex;
        self->host->legacy_call(self->host->host_ctx, ex, r, relay_done, ctx);
        return TURNOUT_PENDING;
    }
    if (bytes_eq(m, "decline")) return TURNOUT_DECLINE;
    if (bytes_eq(m, "error")) return TURNOUT_ERROR;
    if (bytes_eq(m, "fail")) {
        self->host->fail(ex, bytes_of("c-echo: asked to fail"));
        return TURNOUT_RESPONDED;
    }
    if (bytes_eq(m, "thread")) {
        thread_ctx *ctx = malloc(sizeof *ctx);
        if (ctx == NULL) return TURNOUT_ERROR;
        ctx->host = self->host;
        ctx->ex = ex;
        return start_detached(thread_main, ctx);
    }
    if (bytes_eq(m, "late-relay")) {
        relay_ctx *ctx = malloc(sizeof *ctx);
        if (ctx == NULL) return TURNOUT_ERROR;
        ctx->host = self->host;
        ctx->ex = ex;
        return start_detached(late_relay_main, ctx);
    }
    if (bytes_eq(m, "config")) {
        buf config = { 0 };
        self->host->config_json(self->host->host_ctx, sink_to_buf, &config);
        respond_json(self, ex, 200, &config);
        free(config.p);
        return TURNOUT_RESPONDED;
    }
    if (bytes_eq(m, "services")) return services_mode(self, ex, r);
    if (bytes_eq(m, "double")) {
        buf body = { 0 };
        buf_str(&body, "{\"first\":true}");
        respond_json(self, ex, 200, &body);
        free(body.p);
        body = (buf){ 0 };
        buf_str(&body, "{\"second\":true}");
        respond_json(self, ex, 201, &body);
        free(body.p);
        return TURNOUT_DECLINE;
    }
    if (bytes_eq(m, "forget")) return TURNOUT_RESPONDED;
    return TURNOUT_ERROR;
}

static void cecho_on_observe(void *instance, const turnout_request *request, const turnout_response *response,
                             uint32_t lane) {
    cecho *self = instance;
    (void)request;
    buf tag = { 0 };
    buf_str(&tag, "observed:");
    buf_str(&tag, lane == TURNOUT_LANE_OPTIMIZED ? "optimized" : "legacy");
    buf_str(&tag, ":");
    buf_int(&tag, response->status);
    self->host->cache_invalidate_tag(self->host->host_ctx, (turnout_bytes){ (const uint8_t *)tag.p, tag.len });
    free(tag.p);
}

static const turnout_plugin_v1 descriptor = {
    .abi_major = TURNOUT_ABI_MAJOR,
    .abi_minor = TURNOUT_ABI_MINOR,
    .struct_size = sizeof(turnout_plugin_v1),
    .reserved = 0,
    .name = "c-echo",
    .version = CECHO_VERSION,
    .init = cecho_init,
    .destroy = cecho_destroy,
    .on_request = cecho_on_request,
    .on_observe = cecho_on_observe,
};

EXPORT const turnout_plugin_v1 *turnout_plugin_entry_v1(uint32_t host_abi_major, uint32_t host_abi_minor) {
    (void)host_abi_minor;
    if (host_abi_major != TURNOUT_ABI_MAJOR) return NULL;
    return &descriptor;
}
