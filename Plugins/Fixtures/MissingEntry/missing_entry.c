/* Fixture: a shared library that is not a Turnout plugin — it exports a
 * symbol, but not `turnout_plugin_entry_v1`. The host must refuse it. */
#include "turnout_plugin.h"

__attribute__((visibility("default"))) const turnout_plugin_v1 *turnout_plugin_entry_v0(uint32_t major, uint32_t minor) {
    (void)major;
    (void)minor;
    return 0;
}
