// lua/src/codec.h — Lua values as bytes, to cross from one state to another.
//
// What crosses: nil, booleans, integers and floats (kept apart: 1 and 1.0 arrive as they left),
// strings (any bytes), tables of these (keys too, nested, metatables dropped) and ports. A table
// that contains itself (a cycle) is refused; one reached twice by different paths is copied
// twice. A function, a userdata other than a port, or a coroutine is refused, and the error
// names where it sits ("value.a[3]"): nothing is sent.
//
// The encoding is private to evh-lua (both ends are evh-lua states of one process): a magic word,
// a count of values, then each value as a tag byte and its fixed- or length-prefixed body.
#pragma once

#include <evh/evh.h>

extern "C" {
#include <lua.h>
}

#include <cstddef>
#include <string>
#include <vector>

namespace evh_lua {

// Encodes the `count` values from stack index `first` into `out` (cleared first). Ports that
// carry an isolate handle add one reference each to `handles` (their index is in the bytes).
// `root` names the value in error messages ("value" gives "value.a[3]"; with count > 1 the
// values are root[1], root[2], ...). On failure returns false with the message pushed on the
// stack, `out` and `handles` emptied (the references released). Never raises; never throws.
bool encode(lua_State* L, int first, int count, const char* root, std::string& out,
            std::vector<evh_isolate*>& handles);

// Pushes the values encoded in `data` and returns how many. A handle a port takes is set to
// null in `handles` (the rest stay the caller's to release). Raises a Lua error for bytes that
// are not an encoding (or a memory error): call it under protection.
int decode(lua_State* L, const void* data, std::size_t size, evh_isolate** handles,
           std::size_t handle_count);

}  // namespace evh_lua
