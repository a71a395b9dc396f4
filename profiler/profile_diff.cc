#include "profiler/profile_diff.h"
