#include "profiler/goroutine_snapshot.h"
