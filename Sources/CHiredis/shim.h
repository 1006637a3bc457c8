/* hiredis 0.14 from Debian's libhiredis-dev. Only the blocking API is used
 * (redisConnectWithTimeout, redisAppendCommandArgv, redisGetReply,
 * redisBufferRead/Write); the variadic redisCommand is unavailable in Swift. */
#include <hiredis/hiredis.h>
