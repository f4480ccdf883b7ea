/* echo.c: evh from C, through evh/evh.h. An isolate echoes what it is sent; asked "later", it
 * answers from a timer 5 ms on. main() is a plain thread that talks to it through a receiver.
 *
 * Build (installed evh): cc echo.c $(pkg-config --cflags --libs evh) */
#include <evh/evh.h>
#include <stdio.h>
#include <string.h>

// [readme:c]
/* The isolate's state: only its own turn touches it, so it needs no lock. The timer lives here,
 * in the caller's memory: arming it allocates nothing. */
struct echo {
  evh_runtime* rt;
  evh_port_id reply;
  evh_timer later;
};

static void on_later(evh_isolate* self, evh_timer* timer, uint64_t skipped, void* user) {
  struct echo* e = user;
  (void)self, (void)timer, (void)skipped;
  evh_post(e->rt, e->reply, "from a timer", 12, 0);
}

static void on_message(evh_isolate* self, evh_message* m, void* user) {
  struct echo* e = user;
  size_t n = 0;
  const char* text = evh_message_data(m, &n);
  if (n == 5 && memcmp(text, "later", 5) == 0) {
    evh_timer_init(&e->later, on_later, e);
    evh_timer_start(self, &e->later, 5 * 1000000, EVH_SLACK_COARSE); /* 5 ms */
  } else {
    evh_post_message(e->rt, e->reply, m, 0); /* forwards the payload: no copy */
  }
}

int main(void) {
  evh_runtime* rt;
  evh_receiver* replies;
  evh_isolate* iso;
  static struct echo state; /* zeroed; outlives the isolate */
  int err = evh_runtime_create(NULL, &rt);
  if (err != EVH_OK) {
    fprintf(stderr, "evh_runtime_create: %s\n", evh_strerror(err));
    return 1;
  }
  evh_receiver_open(rt, &replies);
  state.rt = rt;
  state.reply = evh_receiver_port(replies);
  evh_isolate_spawn(rt, on_message, &state, NULL, NULL, &iso);

  const char* asks[] = {"hello", "later"};
  const char* wants[] = {"hello", "from a timer"};
  int failed = 0;
  for (int i = 0; i < 2; ++i) {
    evh_post(rt, evh_isolate_main_port(iso), asks[i], strlen(asks[i]), 0);
    evh_message* m;
    err = evh_receiver_receive(replies, 10 * INT64_C(1000000000), &m); /* 10 s */
    if (err != EVH_OK) {
      fprintf(stderr, "evh_receiver_receive: %s\n", evh_strerror(err));
      return 1;
    }
    size_t n;
    const char* text = evh_message_data(m, &n);
    printf("echo.c: asked \"%s\", got \"%.*s\"\n", asks[i], (int)n, text);
    failed |= n != strlen(wants[i]) || memcmp(text, wants[i], n) != 0;
    evh_message_destroy(m);
  }

  evh_isolate_release(iso);
  evh_receiver_destroy(replies);
  err = evh_runtime_destroy(rt); /* shuts down: the isolate ends */
  return err == EVH_OK && !failed ? 0 : 1;
}
// [readme-end]
