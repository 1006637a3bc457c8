/* Loader test fixture (InitFails): a deliberately broken Turnout plugin. */
#ifndef TURNOUT_FIXTURE_H
#define TURNOUT_FIXTURE_H
#include "turnout_plugin.h"
#endif
