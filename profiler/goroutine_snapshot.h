// Placeholder; see the module's issue.
#ifndef GOERRPROF_PROFILER_GOROUTINE_SNAPSHOT_H_
#define GOERRPROF_PROFILER_GOROUTINE_SNAPSHOT_H_
#endif
