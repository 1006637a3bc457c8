/* c-echo: a plain C Turnout plugin proving the ABI is language-neutral.
 * It exports only `turnout_plugin_entry_v1` (see turnout_plugin.h). */
#ifndef TURNOUT_C_ECHO_H
#define TURNOUT_C_ECHO_H
#include "turnout_plugin.h"
#endif
