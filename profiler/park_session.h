// Placeholder; see the module's issue.
#ifndef GOERRPROF_PROFILER_PARK_SESSION_H_
#define GOERRPROF_PROFILER_PARK_SESSION_H_
#endif
