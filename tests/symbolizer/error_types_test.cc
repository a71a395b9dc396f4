// Error types found through the itabs must include every error type errgen
// declares, with the exact size and field layout reflect reports, and the
// standard library's error types with their known fields.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using symbolizer::ErrorFieldKind;
using symbolizer::ErrorType;

// "Name@offset" list of one kind of field, in declaration order.
std::string Fields(const ErrorType& t, ErrorFieldKind kind) {
  std::vector<std::string> parts;
  for (const auto& f : t.fields) {
    if (f.kind == kind) parts.push_back(absl::StrCat(f.name, "@", f.offset));
  }
  return absl::StrJoin(parts, ",");
}

std::string Fields(const google::protobuf::Value& t, const std::string& key) {
  std::vector<std::string> parts;
  for (const auto& f : Get(t, key).list_value().values()) {
    parts.push_back(absl::StrCat(GetString(f, "name"), "@", GetInt(f, "offset")));
  }
  return absl::StrJoin(parts, ",");
}

void CheckErrorTypes(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto reader = (*bin)->types();
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto found = symbolizer::FindErrorTypes(**reader);
  ASSERT_TRUE(found.ok()) << found.status();
  std::map<std::string, const ErrorType*> by_name;
  for (const ErrorType& t : *found) by_name[t.name] = &t;

  CommandResult r = RunCommand({b.path, "-types"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto truth = ParseJson(r.out);
  ASSERT_TRUE(truth.ok()) << truth.status();
  EXPECT_EQ(GetString(*truth, "go_version"), (*bin)->build_info().go_version);
  int declared = 0;
  for (const auto& want : Get(*truth, "error_types").list_value().values()) {
    ++declared;
    std::string name = GetString(want, "name");
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      ADD_FAILURE() << name << " not found among " << found->size() << " error types";
      continue;
    }
    const ErrorType& got = *it->second;
    EXPECT_EQ(symbolizer::KindName(got.kind), GetString(want, "kind")) << name;
    EXPECT_EQ(got.size, GetInt(want, "size")) << name;
    if (want.struct_value().fields().contains("elem_size")) {
      EXPECT_EQ(got.elem_size, GetInt(want, "elem_size")) << name;
    }
    EXPECT_EQ(Fields(got, ErrorFieldKind::kString), Fields(want, "string_fields")) << name;
    EXPECT_EQ(Fields(got, ErrorFieldKind::kError), Fields(want, "error_fields")) << name;
    EXPECT_EQ(Fields(got, ErrorFieldKind::kErrorSlice), Fields(want, "error_slice_fields"))
        << name;
    EXPECT_FALSE(got.itabs.empty()) << name;
  }
  EXPECT_GE(declared, 4);

  // Standard library types errgen creates, with layouts stable across releases.
  struct Known {
    const char* name;
    const char* strings;
    const char* errors;
  };
  for (const Known& k : {Known{"*errors.errorString", "s@0", ""},
                         Known{"*fmt.wrapError", "msg@0", "err@16"},
                         Known{"*fs.PathError", "Op@0,Path@16", "Err@32"},
                         Known{"*strconv.NumError", "Func@0,Num@16", "Err@32"},
                         Known{"syscall.Errno", "", ""}}) {
    auto it = by_name.find(k.name);
    if (it == by_name.end()) {
      ADD_FAILURE() << k.name << " not found";
      continue;
    }
    EXPECT_EQ(Fields(*it->second, ErrorFieldKind::kString), k.strings) << k.name;
    EXPECT_EQ(Fields(*it->second, ErrorFieldKind::kError), k.errors) << k.name;
  }
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("ErrorTypes", "errgen", false, goerrprof::testing::CheckErrorTypes);
  return RUN_ALL_TESTS();
}
