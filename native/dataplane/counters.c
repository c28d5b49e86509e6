/* The counters' names (see counters.h). Constant data: no threads, no locking. */
#include "dataplane/counters.h"

const char *const dp_counter_names[DP_NCOUNTERS] = {
#define DP_COUNTER_NAME(id, name) [DP_##id] = #name,
        DP_COUNTERS(DP_COUNTER_NAME)
#undef DP_COUNTER_NAME
};
