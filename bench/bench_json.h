// bench/bench_json.h — a small JSON reader and writer for evh-bench's own documents: the run
// results (report.h, schema 1) and the perf-CI baseline (perf_compare.h). Strict RFC 8259
// input, numbers as double, objects keep their key order.
//
// Threads: values are plain data; use one from one thread at a time.
#pragma once

#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace evh::bench {

// Malformed JSON or a document of the wrong shape; the message says where.
class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class JsonValue {
 public:
  using Array = std::vector<JsonValue>;
  using Object = std::vector<std::pair<std::string, JsonValue>>;  // in document order

  JsonValue() = default;  // null
  JsonValue(bool b) : v_(b) {}
  JsonValue(double d) : v_(d) {}
  JsonValue(std::string s) : v_(std::move(s)) {}
  JsonValue(Array a) : v_(std::move(a)) {}
  JsonValue(Object o) : v_(std::move(o)) {}

  bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_number() const { return std::holds_alternative<double>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<Array>(v_); }
  bool is_object() const { return std::holds_alternative<Object>(v_); }

  // Each throws JsonError when the value is of another type.
  bool boolean() const;
  double number() const;
  const std::string& string() const;
  const Array& array() const;
  const Object& object() const;
  Object& object();

  // The member `key` of an object; null when absent. Throws JsonError on a non-object.
  const JsonValue* find(std::string_view key) const;
  // Like find(), but throws JsonError naming `key` when it is absent.
  const JsonValue& at(std::string_view key) const;
  // Sets `key` (replacing an existing member in place, else appending).
  void set(std::string key, JsonValue value);

 private:
  std::variant<std::monostate, bool, double, std::string, Array, Object> v_;
};

// Throws JsonError with the byte offset of the first error.
JsonValue parse_json(std::string_view text);
// Reads and parses a file; throws JsonError (also when the file cannot be read).
JsonValue read_json_file(const std::string& path);

// Compact-ish output: one member of the top-level object per line, numbers in their shortest
// round-trip form.
void write_json_value(std::ostream& out, const JsonValue& v, int indent = 0);
// Writes a JSON string literal with the escapes RFC 8259 requires.
void write_json_string(std::ostream& out, std::string_view s);
// The shortest text that reads back as the same double.
void write_json_number(std::ostream& out, double v);

}  // namespace evh::bench
