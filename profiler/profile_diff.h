// Placeholder; see the module's issue.
#ifndef GOERRPROF_PROFILER_PROFILE_DIFF_H_
#define GOERRPROF_PROFILER_PROFILE_DIFF_H_
#endif
