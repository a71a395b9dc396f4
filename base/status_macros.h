// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status plumbing.
#ifndef GOERRPROF_BASE_STATUS_MACROS_H_
#define GOERRPROF_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GEP_CONCAT_INNER(a, b) a##b
#define GEP_CONCAT(a, b) GEP_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status gep_status_ = (expr);       \
    if (!gep_status_.ok()) return gep_status_; \
  } while (0)

#define GEP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  GEP_ASSIGN_OR_RETURN_IMPL(GEP_CONCAT(gep_statusor_, __LINE__), lhs, expr)

#endif  // GOERRPROF_BASE_STATUS_MACROS_H_
