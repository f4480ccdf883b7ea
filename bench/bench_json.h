// bench/bench_json.h — evh-bench's JSON documents (the run results of report.h, schema 1, and the
// perf-CI baseline of perf_compare.h) through nlohmann-json, plus the one thing that library does
// not do our way: the layout of the files we commit.
//
// `Json` keeps the members of an object in document order (ordered_json), so a baseline that is
// read and written back keeps its order and diffs stay small.
//
// Threads: values are plain data; use one from one thread at a time.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace evh::bench {

using Json = nlohmann::ordered_json;

// Malformed JSON, a file that cannot be read, or a document of the wrong shape; the message says
// which file and where.
class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses `text`; throws JsonError with the byte offset of the first error.
Json parse_json(std::string_view text);
// Reads and parses a file; throws JsonError (also when the file cannot be read).
Json read_json_file(const std::string& path);

// The member `key` of object `v`: throws JsonError naming `key` when `v` is not an object or has no
// such member. Typed reads go through `as<T>()` so that a wrong type is a JsonError too.
const Json& member(const Json& v, std::string_view key);
template <class T>
T as(const Json& v, std::string_view what) {
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    throw JsonError("JSON: \"" + std::string(what) + "\" has the wrong type");
  }
}

// Writes `v` as a committed file wants it: the members of a nested object on lines of their own,
// an array one item per line, and an object whose members are all scalars on one line (one result
// row per line). Numbers in their shortest round-trip form; NaN and infinities as null.
void write_json_document(std::ostream& out, const Json& v);

}  // namespace evh::bench
