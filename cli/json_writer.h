// A minimal streaming JSON writer: enough for goerrprof's --json outputs,
// with correct string escaping and comma handling.
#ifndef GOERRPROF_CLI_JSON_WRITER_H_
#define GOERRPROF_CLI_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

namespace goerrprof::profiler {

class JsonWriter {
 public:
  JsonWriter& BeginObject() { return Open('{'); }
  JsonWriter& EndObject() { return Close('}'); }
  JsonWriter& BeginArray() { return Open('['); }
  JsonWriter& EndArray() { return Close(']'); }
  JsonWriter& Key(absl::string_view key);
  JsonWriter& String(absl::string_view value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Bool(bool value);
  JsonWriter& Hex(uint64_t value);  // "0x…" as a string
  const std::string& str() const { return out_; }

 private:
  JsonWriter& Open(char c);
  JsonWriter& Close(char c);
  void Separate();

  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written yet
  bool after_key_ = false;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_CLI_JSON_WRITER_H_
