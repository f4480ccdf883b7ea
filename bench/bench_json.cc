#include "bench_json.h"

#include <fstream>
#include <sstream>

namespace evh::bench {
namespace {

bool is_flat(const Json& v) {
  for (const auto& item : v) {
    if (item.is_structured()) return false;
  }
  return true;
}

void write_value(std::ostream& out, const Json& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent) * 2 + 2, ' ');
  const std::string_view close_pad = std::string_view(pad).substr(2);
  if (v.is_array() && !v.empty()) {
    out << '[';
    bool first = true;
    for (const Json& item : v) {
      out << (first ? "\n" : ",\n") << pad;
      first = false;
      write_value(out, item, indent + 1);
    }
    out << '\n' << close_pad << ']';
  } else if (v.is_object() && !v.empty() && !is_flat(v)) {
    out << '{';
    bool first = true;
    for (const auto& [key, member] : v.items()) {
      out << (first ? "\n" : ",\n") << pad << Json(key).dump() << ": ";
      first = false;
      write_value(out, member, indent + 1);
    }
    out << '\n' << close_pad << '}';
  } else if (v.is_object()) {
    // All scalars: one line, with a space after each separator as people write it.
    out << '{';
    bool first = true;
    for (const auto& [key, member] : v.items()) {
      out << (first ? "" : ", ") << Json(key).dump() << ": ";
      first = false;
      write_value(out, member, indent + 1);
    }
    out << '}';
  } else {
    // dump() writes NaN and infinities as null, and doubles in their shortest round-trip form.
    out << v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

}  // namespace

Json parse_json(std::string_view text) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw JsonError(std::string("JSON: ") + e.what());
  }
}

Json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw JsonError("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return parse_json(text.str());
  } catch (const JsonError& e) {
    throw JsonError(path + ": " + e.what());
  }
}

const Json& member(const Json& v, std::string_view key) {
  if (!v.is_object()) {
    throw JsonError("JSON: expected an object holding \"" + std::string(key) + "\"");
  }
  const auto it = v.find(key);
  if (it == v.end()) throw JsonError("JSON: missing member \"" + std::string(key) + "\"");
  return *it;
}

void write_json_document(std::ostream& out, const Json& v) {
  write_value(out, v, 0);
}

}  // namespace evh::bench
