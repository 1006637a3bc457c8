/* Fixture: a plugin built against a future ABI major (99). The host must
 * refuse it before calling any hook. */
#include "turnout_plugin.h"

static void *never_init(const turnout_host_v1 *host, char *error, size_t cap) {
    (void)host;
    (void)error;
    (void)cap;
    return 0;
}

static int32_t never_request(void *instance, turnout_exchange *ex, const turnout_request *request) {
    (void)instance;
    (void)ex;
    (void)request;
    return TURNOUT_ERROR;
}

static const turnout_plugin_v1 descriptor = {
    .abi_major = 99,
    .abi_minor = 0,
    .struct_size = sizeof(turnout_plugin_v1),
    .name = "fixture-wrong-abi",
    .version = "99.0.0",
    .init = never_init,
    .on_request = never_request,
};

__attribute__((visibility("default"))) const turnout_plugin_v1 *turnout_plugin_entry_v1(uint32_t major, uint32_t minor) {
    (void)major;
    (void)minor;
    return &descriptor;
}
