// lua/src/lib_timer.cc — the `evh` module's timers and microtasks: after, every, after_exact,
// defer, now. Every callback runs on the state's own turn (SEMANTICS 11-15 hold as in C).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "state.h"

namespace evh_lua {
namespace {

// A timer object: evh's timer storage (64-byte aligned, inside the userdata) and, right after it,
// what the callback needs besides (the state comes from the isolate). While armed the object is
// anchored in the registry (`self_ref`), so the collector never frees armed storage; its function
// is the userdata's user value. Kept small: a batch of timers is mostly this.
struct LuaTimer {
  evh_timer timer;
  int self_ref;
  bool periodic;
};
constexpr const char* kTimerType = "evh.timer";
// The timer ends at a 64-byte boundary; what follows it needs only its own alignment.
constexpr std::size_t kTimerUserdataSize = EVH_TIMER_ALIGN - 1 + sizeof(evh_timer) + 8;
static_assert(offsetof(LuaTimer, self_ref) == sizeof(evh_timer) &&
              offsetof(LuaTimer, periodic) + sizeof(bool) <= sizeof(evh_timer) + 8);

// Lua aligns userdata to 16 bytes; the timer inside it is placed on the next 64-byte boundary
// (Lua never moves a userdata, so the address holds for its life).
LuaTimer* timer_in(void* userdata) {
  const auto p = reinterpret_cast<std::uintptr_t>(userdata);
  return reinterpret_cast<LuaTimer*>((p + EVH_TIMER_ALIGN - 1) &
                                     ~std::uintptr_t{EVH_TIMER_ALIGN - 1});
}

LuaTimer* check_timer(lua_State* L, int index) {
  return timer_in(luaL_checkudata(L, index, kTimerType));
}

// A delay in milliseconds (integer or float) as nanoseconds; too large to represent: never.
std::int64_t delay_ns(lua_State* L, int index) {
  if (lua_isinteger(L, index)) {
    const lua_Integer ms = lua_tointeger(L, index);
    luaL_argcheck(L, ms >= 0, index, "a delay in milliseconds, >= 0");
    return ms > INT64_MAX / 1'000'000 ? INT64_MAX : static_cast<std::int64_t>(ms) * 1'000'000;
  }
  const double ms = luaL_checknumber(L, index);
  luaL_argcheck(L, ms >= 0, index, "a delay in milliseconds, >= 0");
  const double ns = std::ceil(ms * 1e6);
  return ns >= 9.2e18 ? INT64_MAX : static_cast<std::int64_t>(ns);
}

void on_timer(evh_isolate* self, evh_timer*, uint64_t skipped, void* user) {
  auto* t = static_cast<LuaTimer*>(user);
  State& st = *static_cast<State*>(evh_isolate_user(self));
  st.self = self;
  if (st.dying) return;
  lua_State* L = st.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  if (!t->periodic) {
    // A one-shot is disarmed before its callback: it may be collected once this call is done.
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    t->self_ref = LUA_NOREF;
  }
  lua_getiuservalue(L, -1, 1);
  lua_insert(L, -2);
  lua_pushinteger(L, static_cast<lua_Integer>(skipped));
  (void)st.call(2);
}

enum class Kind { after, every, after_exact };

int start(lua_State* L, Kind kind) {
  const std::int64_t ns = delay_ns(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (kind == Kind::every) {
    luaL_argcheck(L, ns > 0 && ns <= EVH_DURATION_MAX, 1, "a period in milliseconds, > 0");
  }
  State& st = *State::of(L);
  void* ud = lua_newuserdatauv(L, kTimerUserdataSize, 1);
  LuaTimer* t = timer_in(ud);
  std::memset(static_cast<void*>(&t->timer), 0, sizeof t->timer);
  t->self_ref = LUA_NOREF;
  t->periodic = kind == Kind::every;
  (void)evh_timer_init(&t->timer, &on_timer, t);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  int rc;
  switch (kind) {
    case Kind::every:
      rc = evh_timer_start_periodic(st.self, &t->timer, ns, EVH_SLACK_COARSE);
      break;
    case Kind::after_exact:
      rc = evh_timer_start(st.self, &t->timer, ns, EVH_SLACK_EXACT);
      break;
    default:
      rc = evh_timer_start(st.self, &t->timer, ns, EVH_SLACK_COARSE);
      break;
  }
  if (rc != EVH_OK) return raise_evh_error(L, "timer", rc);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

// evh.after(ms, fn) -> timer: fn(timer) once, ms after this call (within the default slack of
// min(50 us, ms / 8)).
int l_after(lua_State* L) {
  return start(L, Kind::after);
}
// evh.every(ms, fn) -> timer: fn(timer, skipped) every ms on a fixed schedule; `skipped` counts
// whole periods missed while the state was busy (it runs once for them).
int l_every(lua_State* L) {
  return start(L, Kind::every);
}
// evh.after_exact(ms, fn) -> timer: as after, fired as soon as the kernel allows.
int l_after_exact(lua_State* L) {
  return start(L, Kind::after_exact);
}

// timer:cancel(): it will not run again (also from inside an earlier callback of the same
// batch); idempotent.
int timer_cancel(lua_State* L) {
  LuaTimer* t = check_timer(L, 1);
  State& st = *State::of(L);
  if (t->self_ref == LUA_NOREF) return 0;
  const int rc = evh_timer_cancel(st.self, &t->timer);
  if (rc != EVH_OK) return raise_evh_error(L, "timer:cancel", rc);
  luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  t->self_ref = LUA_NOREF;
  return 0;
}

int timer_armed(lua_State* L) {
  lua_pushboolean(L, evh_timer_is_armed(&check_timer(L, 1)->timer) == 1);
  return 1;
}

void run_deferred(evh_isolate* self, void* arg) {
  State& st = *static_cast<State*>(evh_isolate_user(self));
  st.self = self;
  if (st.dying) return;
  const int ref = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  lua_rawgeti(st.L, LUA_REGISTRYINDEX, ref);
  luaL_unref(st.L, LUA_REGISTRYINDEX, ref);
  (void)st.call(0);
}

// evh.defer(fn): fn() after the current callback (and the microtasks before it), before the next
// message or timer. One that never runs (the state exited first) is dropped with the state.
int l_defer(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  State& st = *State::of(L);
  lua_pushvalue(L, 1);
  const int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  const int rc = evh_isolate_microtask(
      st.self, &run_deferred, reinterpret_cast<void*>(static_cast<std::intptr_t>(ref)), nullptr);
  if (rc != EVH_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return raise_evh_error(L, "defer", rc);
  }
  return 0;
}

// evh.now() -> nanoseconds on CLOCK_MONOTONIC, the clock of every timer.
int l_now(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(evh_now()));
  return 1;
}

}  // namespace

void open_timers(lua_State* L) {
  static const luaL_Reg kMethods[] = {
      {"cancel", &timer_cancel}, {"armed", &timer_armed}, {nullptr, nullptr}};
  new_type(L, kTimerType, kMethods, nullptr);
  luaL_getmetatable(L, kTimerType);
  // The metatable is an upvalue of the three starters: no registry lookup per timer.
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, &l_after, 1);  // evh, mt, after
  lua_setfield(L, -3, "after");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, &l_every, 1);
  lua_setfield(L, -3, "every");
  lua_pushcclosure(L, &l_after_exact, 1);  // evh, after_exact
  lua_setfield(L, -2, "after_exact");
  lua_pushcfunction(L, &l_defer);
  lua_setfield(L, -2, "defer");
  lua_pushcfunction(L, &l_now);
  lua_setfield(L, -2, "now");
}

}  // namespace evh_lua
