/* zlib from Debian's zlib1g-dev; only the plain functions (compress2,
 * uncompress, compressBound) are used, so no macro wrappers are needed. */
#include <zlib.h>
