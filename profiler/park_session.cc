#include "profiler/park_session.h"
