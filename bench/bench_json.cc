#include "bench_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace evh::bench {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  JsonValue document() {
    JsonValue v = value();
    skip_space();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw JsonError("JSON: " + what + " at byte " + std::to_string(i_));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  bool eat(char c) {
    skip_space();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  JsonValue value() {
    if (++depth_ > kMaxDepth) fail("nesting too deep");
    skip_space();
    if (i_ >= s_.size()) fail("unexpected end");
    JsonValue v;
    const char c = s_[i_];
    if (c == '{') {
      v = object();
    } else if (c == '[') {
      v = array();
    } else if (c == '"') {
      v = JsonValue(string());
    } else if (literal("true")) {
      v = JsonValue(true);
    } else if (literal("false")) {
      v = JsonValue(false);
    } else if (literal("null")) {
      v = JsonValue();
    } else {
      v = JsonValue(number());
    }
    --depth_;
    return v;
  }

  JsonValue object() {
    expect('{');
    JsonValue::Object members;
    if (eat('}')) return JsonValue(std::move(members));
    do {
      skip_space();
      if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
      std::string key = string();
      expect(':');
      members.emplace_back(std::move(key), value());
    } while (eat(','));
    expect('}');
    return JsonValue(std::move(members));
  }

  JsonValue array() {
    expect('[');
    JsonValue::Array items;
    if (eat(']')) return JsonValue(std::move(items));
    do {
      items.push_back(value());
    } while (eat(','));
    expect(']');
    return JsonValue(std::move(items));
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, v, 16);
    if (ec != std::errc() || end != s_.data() + i_ + 4) fail("bad \\u escape");
    i_ += 4;
    return v;
  }

  void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string string() {
    ++i_;  // the opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && literal("\\u")) {
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }

  double number() {
    const std::size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() &&
           std::string_view("0123456789.eE+-").find(s_[i_]) != std::string_view::npos)
      ++i_;
    double v = 0;
    const auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + i_, v);
    if (start == i_ || ec != std::errc() || end != s_.data() + i_) {
      i_ = start;
      fail("bad value");
    }
    return v;
  }

  static constexpr int kMaxDepth = 64;
  std::string_view s_;
  std::size_t i_ = 0;
  int depth_ = 0;
};

[[noreturn]] void wrong_type(const char* want) {
  throw JsonError(std::string("JSON: expected ") + want);
}

}  // namespace

bool JsonValue::boolean() const {
  if (!is_bool()) wrong_type("true or false");
  return std::get<bool>(v_);
}
double JsonValue::number() const {
  if (!is_number()) wrong_type("a number");
  return std::get<double>(v_);
}
const std::string& JsonValue::string() const {
  if (!is_string()) wrong_type("a string");
  return std::get<std::string>(v_);
}
const JsonValue::Array& JsonValue::array() const {
  if (!is_array()) wrong_type("an array");
  return std::get<Array>(v_);
}
const JsonValue::Object& JsonValue::object() const {
  if (!is_object()) wrong_type("an object");
  return std::get<Object>(v_);
}
JsonValue::Object& JsonValue::object() {
  if (!is_object()) wrong_type("an object");
  return std::get<Object>(v_);
}

const JsonValue* JsonValue::find(std::string_view key) const {
  for (const auto& [k, v] : object()) {
    if (k == key) return &v;
  }
  return nullptr;
}

const JsonValue& JsonValue::at(std::string_view key) const {
  const JsonValue* v = find(key);
  if (v == nullptr) throw JsonError("JSON: missing member \"" + std::string(key) + "\"");
  return *v;
}

void JsonValue::set(std::string key, JsonValue value) {
  for (auto& [k, v] : object()) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  object().emplace_back(std::move(key), std::move(value));
}

JsonValue parse_json(std::string_view text) {
  return Parser(text).document();
}

JsonValue read_json_file(const std::string& path) {
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

void write_json_string(std::ostream& out, std::string_view s) {
  out << '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out << "\\\"";
        break;
      case '\\':
        out << "\\\\";
        break;
      case '\n':
        out << "\\n";
        break;
      case '\t':
        out << "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out << buf;
        } else {
          out << c;
        }
    }
  }
  out << '"';
}

void write_json_number(std::ostream& out, double v) {
  if (!std::isfinite(v)) {
    out << "null";  // JSON has no NaN or infinity
    return;
  }
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out << std::string_view(buf, ec == std::errc() ? static_cast<std::size_t>(end - buf) : 0);
}

void write_json_value(std::ostream& out, const JsonValue& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent) * 2 + 2, ' ');
  if (v.is_null()) {
    out << "null";
  } else if (v.is_number()) {
    write_json_number(out, v.number());
  } else if (v.is_string()) {
    write_json_string(out, v.string());
  } else if (v.is_array()) {
    // Arrays of scalars or of small objects: one item per line.
    out << '[';
    bool first = true;
    for (const JsonValue& item : v.array()) {
      out << (first ? "\n" : ",\n") << pad;
      first = false;
      write_json_value(out, item, indent + 1);
    }
    if (!first) out << '\n' << std::string_view(pad).substr(2);
    out << ']';
  } else if (v.is_object()) {
    // Objects whose members are all scalars stay on one line.
    bool flat = true;
    for (const auto& [k, m] : v.object()) flat &= !(m.is_array() || m.is_object());
    out << '{';
    bool first = true;
    for (const auto& [k, m] : v.object()) {
      if (!first) out << ',';
      if (!flat) {
        out << '\n' << pad;
      } else if (!first) {
        out << ' ';
      }
      first = false;
      write_json_string(out, k);
      out << ": ";
      write_json_value(out, m, indent + 1);
    }
    if (!flat && !first) out << '\n' << std::string_view(pad).substr(2);
    out << '}';
  } else {
    out << (v.boolean() ? "true" : "false");
  }
}

}  // namespace evh::bench
