// Command-line flags shared by goerrprof's subcommands.
#ifndef GOERRPROF_PROFILER_FLAGS_H_
#define GOERRPROF_PROFILER_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, pid);

#endif  // GOERRPROF_PROFILER_FLAGS_H_
