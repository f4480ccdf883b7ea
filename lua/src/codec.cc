// lua/src/codec.cc — Lua values as bytes (codec.h).
#include "codec.h"

extern "C" {
#include <lauxlib.h>
}

#include <cstdint>
#include <cstring>
#include <new>

#include "state.h"

namespace evh_lua {
namespace {

enum Tag : std::uint8_t { kNil = 0, kFalse, kTrue, kInt, kFloat, kString, kTable, kPort };

constexpr std::uint32_t kMagic = 0x65766c76;  // "evlv"
constexpr std::uint32_t kNoHandle = 0xffffffff;
// Deeper tables are refused rather than risking the C stack (each level is one C frame here and
// one in the decoder).
constexpr int kMaxDepth = 200;

// One step of the path from the root to the value being encoded, for error messages. The keys
// of tables being walked stay on the Lua stack, so a step names a stack slot.
struct Step {
  enum Kind : std::uint8_t { array_index, key_slot, as_key } kind;
  lua_Integer index;  // array_index
  int slot;           // key_slot, as_key: the key's stack index
};

bool is_identifier(const char* s, std::size_t n) {
  if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) {
    return false;
  }
  for (std::size_t i = 1; i < n; ++i) {
    const char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

class Encoder {
 public:
  Encoder(lua_State* L, std::string& out, std::vector<evh_isolate*>& handles)
      : L_(L), out_(out), handles_(handles) {}

  // False once something cannot be copied; `problem_` says what and `where()` where.
  bool value(int idx) {
    switch (lua_type(L_, idx)) {
      case LUA_TNIL:
        put(kNil);
        return true;
      case LUA_TBOOLEAN:
        put(lua_toboolean(L_, idx) ? kTrue : kFalse);
        return true;
      case LUA_TNUMBER:
        if (lua_isinteger(L_, idx)) {
          put(kInt);
          put_raw(static_cast<std::int64_t>(lua_tointeger(L_, idx)));
        } else {
          put(kFloat);
          put_raw(static_cast<double>(lua_tonumber(L_, idx)));
        }
        return true;
      case LUA_TSTRING: {
        std::size_t n = 0;
        const char* s = lua_tolstring(L_, idx, &n);
        if (n > UINT32_MAX) return fail("a string longer than 4 GiB");
        put(kString);
        put_raw(static_cast<std::uint32_t>(n));
        out_.append(s, n);
        return true;
      }
      case LUA_TTABLE:
        return table(idx);
      case LUA_TUSERDATA:
        if (!lua_checkstack(L_, 2)) return fail("a value nested too deeply");
        if (auto* p = static_cast<LuaPort*>(luaL_testudata(L_, idx, kPortType))) {
          put(kPort);
          put_raw(static_cast<std::uint64_t>(p->id));
          if (p->isolate != nullptr && evh_isolate_retain(p->isolate) == EVH_OK) {
            handles_.push_back(p->isolate);
            put_raw(static_cast<std::uint32_t>(handles_.size() - 1));
          } else {
            put_raw(kNoHandle);
          }
          return true;
        }
        return fail("a userdata");
      case LUA_TFUNCTION:
        return fail("a function");
      case LUA_TTHREAD:
        return fail("a coroutine");
      case LUA_TLIGHTUSERDATA:
        return fail("a light userdata");
      default:
        return fail("a value of an unknown type");
    }
  }

  // "value.a[3]", from the steps; `root` names the top value.
  std::string where(const std::string& root) const {
    std::string s = root;
    for (const Step& step : path_) {
      if (step.kind == Step::array_index) {
        s += '[' + std::to_string(step.index) + ']';
      } else if (step.kind == Step::key_slot) {
        s += key_text(step.slot);
      }
    }
    return s;
  }
  bool failed_on_key() const { return !path_.empty() && path_.back().kind == Step::as_key; }

  const char* problem_ = nullptr;

 private:
  bool table(int idx) {
    if (static_cast<int>(tables_.size()) >= kMaxDepth) return fail("a table nested too deeply");
    const void* self = lua_topointer(L_, idx);
    for (const void* t : tables_) {
      if (t == self) return fail("a table that contains itself (a cycle)");
    }
    if (!lua_checkstack(L_, 4)) return fail("a table nested too deeply");
    tables_.push_back(self);
    put(kTable);
    const lua_Unsigned n = lua_rawlen(L_, idx);
    if (n > UINT32_MAX / 2) return fail("a table too large");
    const auto narr = static_cast<std::uint32_t>(n);
    put_raw(narr);
    const std::size_t nrec_at = out_.size();
    put_raw(std::uint32_t{0});
    // The sequence part first, in order (a hole in it travels as nil)...
    for (std::uint32_t i = 1; i <= narr; ++i) {
      lua_rawgeti(L_, idx, static_cast<lua_Integer>(i));
      path_.push_back({Step::array_index, static_cast<lua_Integer>(i), 0});
      if (!value(lua_gettop(L_))) return false;
      path_.pop_back();
      lua_pop(L_, 1);
    }
    // ...then every other key. On failure the keys stay on the stack for where(); the caller
    // resets the stack.
    std::uint32_t nrec = 0;
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      const int key = lua_gettop(L_) - 1;
      if (lua_isinteger(L_, key)) {
        const lua_Integer k = lua_tointeger(L_, key);
        if (k >= 1 && static_cast<lua_Unsigned>(k) <= narr) {
          lua_pop(L_, 1);
          continue;
        }
      }
      path_.push_back({Step::as_key, 0, key});
      if (!value(key)) return false;
      path_.back().kind = Step::key_slot;
      if (!value(key + 1)) return false;
      path_.pop_back();
      lua_pop(L_, 1);
      ++nrec;
    }
    std::memcpy(out_.data() + nrec_at, &nrec, sizeof nrec);
    tables_.pop_back();
    return true;
  }

  // ".name", "[3]", "[\"two words\"]", "[1.5]", "[true]", "[table]".
  std::string key_text(int slot) const {
    switch (lua_type(L_, slot)) {
      case LUA_TSTRING: {
        std::size_t n = 0;
        const char* k = lua_tolstring(L_, slot, &n);
        if (is_identifier(k, n)) return '.' + std::string(k, n);
        std::string q = "[\"";
        for (std::size_t i = 0; i < n && i < 40; ++i) {
          const unsigned char c = static_cast<unsigned char>(k[i]);
          if (c == '"' || c == '\\') {
            q += '\\';
            q += static_cast<char>(c);
          } else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            q += hex;
          } else {
            q += static_cast<char>(c);
          }
        }
        if (n > 40) q += "...";
        return q + "\"]";
      }
      case LUA_TNUMBER:
        if (lua_isinteger(L_, slot)) return '[' + std::to_string(lua_tointeger(L_, slot)) + ']';
        {
          char num[40];
          std::snprintf(num, sizeof num, "[%.14g]", static_cast<double>(lua_tonumber(L_, slot)));
          return num;
        }
      case LUA_TBOOLEAN:
        return lua_toboolean(L_, slot) ? "[true]" : "[false]";
      default:
        return std::string("[") + lua_typename(L_, lua_type(L_, slot)) + ']';
    }
  }

  bool fail(const char* what) {
    problem_ = what;
    return false;
  }
  void put(Tag t) { out_.push_back(static_cast<char>(t)); }
  template <class T>
  void put_raw(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }

  lua_State* L_;
  std::string& out_;
  std::vector<evh_isolate*>& handles_;
  std::vector<const void*> tables_;
  std::vector<Step> path_;
};

void release_all(std::vector<evh_isolate*>& handles) {
  for (evh_isolate* h : handles) {
    if (h != nullptr) (void)evh_isolate_release(h);
  }
  handles.clear();
}

class Decoder {
 public:
  Decoder(lua_State* L, const unsigned char* p, const unsigned char* end, evh_isolate** handles,
          std::size_t handle_count)
      : L_(L), p_(p), end_(end), handles_(handles), handle_count_(handle_count) {}

  template <class T>
  T take() {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(T)) malformed();
    T v;
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return v;
  }

  void value(int depth) {
    luaL_checkstack(L_, 3, "evh: a received value nested too deeply");
    switch (take<std::uint8_t>()) {
      case kNil:
        lua_pushnil(L_);
        return;
      case kFalse:
        lua_pushboolean(L_, 0);
        return;
      case kTrue:
        lua_pushboolean(L_, 1);
        return;
      case kInt:
        lua_pushinteger(L_, static_cast<lua_Integer>(take<std::int64_t>()));
        return;
      case kFloat:
        lua_pushnumber(L_, static_cast<lua_Number>(take<double>()));
        return;
      case kString: {
        const auto n = take<std::uint32_t>();
        if (static_cast<std::size_t>(end_ - p_) < n) malformed();
        lua_pushlstring(L_, reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return;
      }
      case kTable: {
        if (depth >= kMaxDepth) malformed();
        const auto narr = take<std::uint32_t>();
        const auto nrec = take<std::uint32_t>();
        // Every element takes at least one byte: refuse counts the bytes cannot hold before
        // sizing a table by them.
        if (narr + 2ull * nrec > static_cast<std::size_t>(end_ - p_)) malformed();
        lua_createtable(L_, static_cast<int>(narr), static_cast<int>(nrec));
        for (std::uint32_t i = 1; i <= narr; ++i) {
          value(depth + 1);
          lua_rawseti(L_, -2, static_cast<lua_Integer>(i));
        }
        for (std::uint32_t i = 0; i < nrec; ++i) {
          value(depth + 1);
          if (lua_isnil(L_, -1)) malformed();
          value(depth + 1);
          lua_rawset(L_, -3);
        }
        return;
      }
      case kPort: {
        const auto id = take<std::uint64_t>();
        const auto index = take<std::uint32_t>();
        auto* port = static_cast<LuaPort*>(lua_newuserdatauv(L_, sizeof(LuaPort), 0));
        port->id = id;
        port->isolate = nullptr;
        luaL_setmetatable(L_, kPortType);
        // Taken only once the object exists: a memory error above leaves it to the payload.
        if (index != kNoHandle && index < handle_count_) {
          port->isolate = handles_[index];
          handles_[index] = nullptr;
        }
        return;
      }
      default:
        malformed();
    }
  }

  [[noreturn]] void malformed() {
    luaL_error(L_, "evh: a message that is not an evh-lua value was received");
    __builtin_unreachable();
  }

  bool done() const { return p_ == end_; }

 private:
  lua_State* L_;
  const unsigned char* p_;
  const unsigned char* end_;
  evh_isolate** handles_;
  std::size_t handle_count_;
};

}  // namespace

bool encode(lua_State* L, int first, int count, const char* root, std::string& out,
            std::vector<evh_isolate*>& handles) {
  out.clear();
  release_all(handles);
  const int top = lua_gettop(L);
  std::string message;
  try {
    out.append(reinterpret_cast<const char*>(&kMagic), sizeof kMagic);
    const auto n = static_cast<std::uint32_t>(count);
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    Encoder e(L, out, handles);
    for (int i = 0; i < count; ++i) {
      if (e.value(first + i)) continue;
      std::string name = root;
      if (count > 1) name += '[' + std::to_string(i + 1) + ']';
      if (e.failed_on_key()) {
        message =
            std::string("evh: cannot copy ") + e.problem_ + " used as a key in " + e.where(name);
      } else {
        message = std::string("evh: cannot copy ") + e.problem_ + " at " + e.where(name);
      }
      message +=
          " (only nil, booleans, numbers, strings, tables of them and ports cross between "
          "states)";
      break;
    }
  } catch (const std::bad_alloc&) {
    message = "evh: not enough memory to copy the value";
  }
  lua_settop(L, top);
  if (message.empty()) return true;
  out.clear();
  release_all(handles);
  lua_pushlstring(L, message.data(), message.size());
  return false;
}

int decode(lua_State* L, const void* data, std::size_t size, evh_isolate** handles,
           std::size_t handle_count) {
  const auto* p = static_cast<const unsigned char*>(data);
  Decoder d(L, p, p + size, handles, handle_count);
  if (d.take<std::uint32_t>() != kMagic) d.malformed();
  const auto count = d.take<std::uint32_t>();
  if (count > size) d.malformed();
  luaL_checkstack(L, static_cast<int>(count) + 3, "evh: too many values received");
  for (std::uint32_t i = 0; i < count; ++i) d.value(0);
  if (!d.done()) d.malformed();
  return static_cast<int>(count);
}

}  // namespace evh_lua
