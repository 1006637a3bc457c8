/* Fixture: a plugin whose init always fails, as one whose database is down
 * would. The host must refuse it with the plugin's own message. */
#include "turnout_plugin.h"

#include <stdio.h>

static void *failing_init(const turnout_host_v1 *host, char *error, size_t cap) {
    (void)host;
    snprintf(error, cap, "fixture: init always fails (database unreachable)");
    return 0;
}

static int32_t never_request(void *instance, turnout_exchange *ex, const turnout_request *request) {
    (void)instance;
    (void)ex;
    (void)request;
    return TURNOUT_ERROR;
}

static const turnout_plugin_v1 descriptor = {
    .abi_major = TURNOUT_ABI_MAJOR,
    .abi_minor = TURNOUT_ABI_MINOR,
    .struct_size = sizeof(turnout_plugin_v1),
    .name = "fixture-init-fails",
    .version = "1.0.0",
    .init = failing_init,
    .on_request = never_request,
};

__attribute__((visibility("default"))) const turnout_plugin_v1 *turnout_plugin_entry_v1(uint32_t major, uint32_t minor) {
    (void)major;
    (void)minor;
    return &descriptor;
}
