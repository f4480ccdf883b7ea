/* The C API from C: strict C11 against evh.h only, as a C runtime would use it. Exits 0 when
 * every check holds; prints each failed check. */
#include <evh/evh.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                                          \
  do {                                                                                          \
    long long a_ = (long long)(a), b_ = (long long)(b);                                         \
    if (a_ != b_) {                                                                             \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, #a, #b, a_, \
              b_);                                                                              \
      ++failures;                                                                               \
    }                                                                                           \
  } while (0)

static const int64_t kLongWait = INT64_C(60000000000); /* a wait this long has hung */
static const int64_t kMs = 1000000;

static atomic_int finalized;
static void count_finalize(void* object) {
  (void)object;
  atomic_fetch_add(&finalized, 1);
}

static atomic_int destroyed;
static void count_destroy(void* user) {
  (void)user;
  atomic_fetch_add(&destroyed, 1);
}

/* Receives one message's bytes into buf (NUL-terminated); returns its kind. */
static int receive_text(evh_receiver* rx, char* buf, size_t cap) {
  evh_message* m = NULL;
  int kind;
  size_t n = 0;
  const void* d;
  CHECK_EQ(evh_receiver_receive(rx, kLongWait, &m), EVH_OK);
  kind = evh_message_kind(m);
  d = evh_message_data(m, &n);
  if (n >= cap) n = cap - 1;
  if (d != NULL) memcpy(buf, d, n);
  buf[n] = '\0';
  evh_message_destroy(m);
  return kind;
}

/* ---- an echo isolate ---- */

struct echo_ctx {
  evh_runtime* rt;
  evh_port_id reply;
};

static void echo(evh_isolate* self, evh_message* m, void* user) {
  struct echo_ctx* c = (struct echo_ctx*)user;
  (void)self;
  CHECK_EQ(evh_post_message(c->rt, c->reply, m, 0), EVH_OK);
}

static void test_echo(void) {
  evh_runtime* rt = NULL;
  evh_receiver* rx = NULL;
  evh_isolate* iso = NULL;
  struct echo_ctx ctx;
  evh_port_id port;
  evh_message* m = NULL;
  char buf[64];
  int value = 7;

  atomic_store(&finalized, 0);
  CHECK_EQ(evh_runtime_create(NULL, &rt), EVH_OK);
  CHECK_EQ(evh_receiver_open(rt, &rx), EVH_OK);
  ctx.rt = rt;
  ctx.reply = evh_receiver_port(rx);
  CHECK_EQ(evh_isolate_spawn(rt, echo, &ctx, count_destroy, NULL, &iso), EVH_OK);
  port = evh_isolate_main_port(iso);
  CHECK(port != 0);

  CHECK_EQ(evh_post(rt, port, "hello", 5, 0), EVH_OK);
  CHECK_EQ(receive_text(rx, buf, sizeof buf), EVH_MESSAGE_BYTES);
  CHECK(strcmp(buf, "hello") == 0);

  /* A batch arrives whole and in order; an invalid item posts none of it. */
  {
    evh_bytes items[3] = {{"one", 3}, {"", 0}, {"three", 5}};
    evh_bytes bad[2] = {{"ok", 2}, {NULL, 4}};
    /* An array's element: its layout is fixed (evh.h), the same in C as in the library. */
    CHECK(sizeof(evh_bytes) == sizeof(void*) + sizeof(size_t));
    CHECK(offsetof(evh_bytes, size) == sizeof(void*));
    CHECK_EQ(evh_post_batch(rt, port, bad, 2, 0), EVH_EINVAL);
    CHECK_EQ(evh_post_batch(rt, port, NULL, 1, 0), EVH_EINVAL);
    CHECK_EQ(evh_post_batch(rt, port, items, 3, 4), EVH_EINVAL); /* unknown flag */
    CHECK_EQ(evh_post_batch(rt, 12345, items, 3, 0), EVH_EUNKNOWNPORT);
    CHECK_EQ(evh_post_batch(rt, port, items, 3, 0), EVH_OK);
    CHECK_EQ(receive_text(rx, buf, sizeof buf), EVH_MESSAGE_BYTES);
    CHECK(strcmp(buf, "one") == 0);
    CHECK_EQ(receive_text(rx, buf, sizeof buf), EVH_MESSAGE_BYTES);
    CHECK(strcmp(buf, "") == 0);
    CHECK_EQ(receive_text(rx, buf, sizeof buf), EVH_MESSAGE_BYTES);
    CHECK(strcmp(buf, "three") == 0);
  }

  /* A native payload comes back without a copy; the receiver takes it: never finalized. */
  CHECK_EQ(evh_post_native(rt, port, &value, count_finalize, EVH_POST_OOB), EVH_OK);
  CHECK_EQ(evh_receiver_receive(rx, kLongWait, &m), EVH_OK);
  CHECK(evh_message_take_native(m) == &value);
  evh_message_destroy(m);
  CHECK_EQ(atomic_load(&finalized), 0);
  /* A failed post finalizes before it returns. */
  CHECK_EQ(evh_post_native(rt, 12345, &value, count_finalize, 0), EVH_EUNKNOWNPORT);
  CHECK_EQ(atomic_load(&finalized), 1);

  CHECK_EQ(evh_isolate_add_exit_listener(iso, evh_receiver_port(rx)), EVH_OK);
  CHECK_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  CHECK_EQ(evh_receiver_receive(rx, kLongWait, &m), EVH_OK);
  {
    evh_isolate_exit e;
    CHECK_EQ(evh_message_isolate_exit(m, &e), EVH_OK);
    CHECK_EQ(e.reason, EVH_EXIT_KILLED);
    CHECK(e.isolate == port);
  }
  evh_message_destroy(m);

  CHECK_EQ(evh_runtime_destroy(rt), EVH_EBUSY); /* handles still held */
  CHECK_EQ(evh_runtime_shutdown(rt), EVH_OK);
  CHECK_EQ(atomic_load(&destroyed), 1);
  CHECK_EQ(evh_isolate_release(iso), EVH_OK);
  CHECK_EQ(evh_receiver_destroy(rx), EVH_OK);
  CHECK_EQ(evh_runtime_destroy(rt), EVH_OK);
}

/* ---- timers from C: storage in the isolate's own struct ---- */

struct timer_ctx {
  evh_runtime* rt;
  evh_port_id reply;
  evh_timer one, at, tick, cancelled;
  char trace[32];
  int ticks;
};

static struct timer_ctx* timers_of(evh_isolate* self) {
  return (struct timer_ctx*)evh_isolate_user(self);
}

static void note(evh_isolate* self, evh_timer* t, uint64_t skipped, void* user) {
  struct timer_ctx* c = timers_of(self);
  size_t n = strlen(c->trace);
  (void)skipped;
  if (evh_now() < evh_timer_deadline(t)) c->trace[n++] = '!'; /* early: never */
  c->trace[n] = *(const char*)user;
  c->trace[n + 1] = '\0';
}

static void tick(evh_isolate* self, evh_timer* t, uint64_t skipped, void* user) {
  struct timer_ctx* c = timers_of(self);
  (void)skipped;
  size_t n = strlen(c->trace);
  (void)user;
  /* Inside a periodic timer's callback its deadline is already the next one. */
  c->trace[n] = 't';
  c->trace[n + 1] = '\0';
  if (++c->ticks == 3) {
    CHECK_EQ(evh_timer_cancel(self, t), EVH_OK);
    CHECK_EQ(evh_post(c->rt, c->reply, c->trace, strlen(c->trace), 0), EVH_OK);
  }
}

static void start_timers(evh_isolate* self, evh_message* m, void* user) {
  struct timer_ctx* c = (struct timer_ctx*)user;
  int64_t d;
  (void)m;
  CHECK_EQ(evh_timer_init(&c->one, note, "1"), EVH_OK);
  CHECK_EQ(evh_timer_init(&c->at, note, "2"), EVH_OK);
  CHECK_EQ(evh_timer_init(&c->cancelled, note, "x"), EVH_OK);
  CHECK_EQ(evh_timer_init(&c->tick, tick, NULL), EVH_OK);
  CHECK_EQ(evh_timer_start(self, &c->one, kMs, EVH_SLACK_EXACT), EVH_OK);
  d = evh_timer_deadline(&c->one);
  CHECK_EQ(evh_timer_start_at(self, &c->at, d + kMs, EVH_SLACK_COARSE), EVH_OK);
  CHECK_EQ(evh_timer_start_at(self, &c->cancelled, d, EVH_SLACK_EXACT), EVH_OK);
  CHECK_EQ(evh_timer_cancel(self, &c->cancelled), EVH_OK);
  CHECK_EQ(evh_timer_start_periodic_at(self, &c->tick, d + 2 * kMs, kMs, 100000), EVH_OK);
  /* Bad input gets codes. */
  CHECK_EQ(evh_timer_start(self, &c->one, -1, EVH_SLACK_EXACT), EVH_EINVAL);
  CHECK_EQ(evh_timer_start_periodic(self, &c->one, 0, EVH_SLACK_EXACT), EVH_EINVAL);
  CHECK_EQ(evh_timer_start(self, NULL, kMs, EVH_SLACK_EXACT), EVH_EINVAL);
}

static void test_timers(void) {
  evh_runtime* rt = NULL;
  evh_receiver* rx = NULL;
  evh_isolate* iso = NULL;
  static struct timer_ctx ctx; /* zeroed; evh_timer members are 64-byte aligned by type */
  char buf[64];

  CHECK_EQ(evh_runtime_create(NULL, &rt), EVH_OK);
  CHECK_EQ(evh_receiver_open(rt, &rx), EVH_OK);
  ctx.rt = rt;
  ctx.reply = evh_receiver_port(rx);
  CHECK_EQ(evh_isolate_spawn(rt, start_timers, &ctx, NULL, NULL, &iso), EVH_OK);
  /* Outside the isolate's turn, own-turn calls are refused. */
  CHECK_EQ(evh_timer_start(iso, &ctx.one, kMs, EVH_SLACK_EXACT), EVH_EWRONGTHREAD);
  CHECK_EQ(evh_post(rt, evh_isolate_main_port(iso), "go", 2, 0), EVH_OK);
  receive_text(rx, buf, sizeof buf);
  CHECK(strcmp(buf, "12ttt") == 0);
  CHECK_EQ(evh_isolate_release(iso), EVH_OK);
  CHECK_EQ(evh_receiver_destroy(rx), EVH_OK);
  CHECK_EQ(evh_runtime_destroy(rt), EVH_OK);
}

/* ---- errors reported by a C handler ---- */

static void fail(evh_isolate* self, evh_message* m, void* user) {
  (void)m;
  (void)user;
  CHECK_EQ(evh_isolate_report_error(self, "a C error"), EVH_OK);
}

static void test_errors(void) {
  evh_runtime* rt = NULL;
  evh_receiver* rx = NULL;
  evh_isolate* iso = NULL;
  evh_isolate_options o;
  evh_message* m = NULL;
  char what[32];
  evh_isolate_exit e;

  CHECK_EQ(evh_runtime_create(NULL, &rt), EVH_OK);
  CHECK_EQ(evh_receiver_open(rt, &rx), EVH_OK);
  evh_isolate_options_init(&o);
  o.errors_are_fatal = 1;
  CHECK_EQ(evh_isolate_spawn(rt, fail, NULL, NULL, &o, &iso), EVH_OK);
  CHECK_EQ(evh_isolate_add_error_listener(iso, evh_receiver_port(rx)), EVH_OK);
  CHECK_EQ(evh_isolate_add_exit_listener(iso, evh_receiver_port(rx)), EVH_OK);
  CHECK_EQ(evh_post(rt, evh_isolate_main_port(iso), "", 0, 0), EVH_OK);
  CHECK_EQ(evh_receiver_receive(rx, kLongWait, &m), EVH_OK);
  CHECK_EQ(evh_message_isolate_error(m, NULL, what, sizeof what), 9);
  CHECK(strcmp(what, "a C error") == 0);
  evh_message_destroy(m);
  CHECK_EQ(evh_receiver_receive(rx, kLongWait, &m), EVH_OK);
  CHECK_EQ(evh_message_isolate_exit(m, &e), EVH_OK);
  CHECK_EQ(e.reason, EVH_EXIT_ERROR);
  evh_message_destroy(m);
  CHECK_EQ(evh_isolate_release(iso), EVH_OK);
  CHECK_EQ(evh_receiver_destroy(rx), EVH_OK);
  CHECK_EQ(evh_runtime_destroy(rt), EVH_OK);
}

/* ---- bad input ---- */

static void test_bad_input(void) {
  evh_runtime* rt = NULL;
  evh_runtime_options o;
  int value = 1;

  CHECK_EQ(evh_version(), EVH_VERSION_HEX);
  CHECK(strcmp(evh_version_string(), EVH_VERSION_STRING) == 0);
  CHECK(strcmp(evh_strerror(EVH_EPORTCLOSED), "port closed") == 0);
  CHECK_EQ(evh_runtime_create(NULL, NULL), EVH_EINVAL);
  evh_runtime_options_init(&o);
  o.time_slice_ns = -1;
  CHECK_EQ(evh_runtime_create(&o, &rt), EVH_EINVAL);
  CHECK(rt == NULL);
  CHECK_EQ(evh_runtime_destroy(NULL), EVH_EINVAL);
  CHECK_EQ(evh_post(NULL, 1, "x", 1, 0), EVH_EINVAL);
  atomic_store(&finalized, 0);
  CHECK_EQ(evh_post_native(NULL, 1, &value, count_finalize, 0), EVH_EINVAL);
  CHECK_EQ(atomic_load(&finalized), 1); /* released whatever happens */
  CHECK_EQ(evh_isolate_kill(NULL, EVH_IMMEDIATE), EVH_EINVAL);
  CHECK_EQ(evh_timer_init(NULL, note, NULL), EVH_EINVAL);
  CHECK_EQ(evh_mutex_destroy(NULL), EVH_EINVAL);
  CHECK_EQ(evh_fd_add(NULL, 0, 1, EVH_READABLE, NULL), EVH_EINVAL);
  {
    /* The initialisers compile as C and set the size; a struct left at zero is refused. */
    const evh_isolate_options io = EVH_ISOLATE_OPTIONS_INIT;
    const evh_fd_options fo = EVH_FD_OPTIONS_INIT;
    const evh_process_options po = EVH_PROCESS_OPTIONS_INIT;
    CHECK(io.size == sizeof io && fo.size == sizeof fo && po.size == sizeof po);
    /* The fields appended after 0.2.0 start at 0 (evh's defaults), so that an older library
     * takes the struct; their other special values are plain C constants. */
    CHECK(po.stream_window == 0 && po.output_pipe_size == 0);
    CHECK(EVH_STREAM_WINDOW_UNLIMITED == SIZE_MAX && EVH_PIPE_SIZE_KEEP == SIZE_MAX);
    CHECK(EVH_PIPE_SIZE_MIN == 4096 && EVH_PIPE_SIZE_MAX == ((size_t)1 << 30));
    memset(&o, 0, sizeof o);
    CHECK_EQ(evh_runtime_create(&o, &rt), EVH_EOPTIONS);
    CHECK(rt == NULL);
  }
}

int main(void) {
  test_bad_input();
  test_echo();
  test_timers();
  test_errors();
  if (failures != 0) {
    fprintf(stderr, "capi_c_test: %d checks failed\n", failures);
    return 1;
  }
  printf("capi_c_test: all checks passed\n");
  return 0;
}
