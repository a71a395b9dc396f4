// Command-line flags shared by goerrprof's subcommands.
#ifndef GOERRPROF_CLI_FLAGS_H_
#define GOERRPROF_CLI_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, pid);

#endif  // GOERRPROF_CLI_FLAGS_H_
