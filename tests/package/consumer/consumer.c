/* Uses an installed evh through its C API: an isolate echoes one message back. */
#include <evh/evh.h>
#include <stdio.h>
#include <string.h>

static void echo(evh_isolate* self, evh_message* m, void* user) {
  evh_post_message(evh_isolate_runtime(self), *(evh_port_id*)user, m, 0);
}

int main(void) {
  evh_runtime* rt = NULL;
  evh_receiver* rx = NULL;
  evh_isolate* iso = NULL;
  evh_message* m = NULL;
  evh_port_id reply;
  size_t n = 0;
  int ok;
  if (evh_version() != EVH_VERSION_HEX) return 1; /* headers and library agree */
  if (evh_runtime_create(NULL, &rt) != EVH_OK || evh_receiver_open(rt, &rx) != EVH_OK) return 1;
  reply = evh_receiver_port(rx);
  if (evh_isolate_spawn(rt, echo, &reply, NULL, NULL, &iso) != EVH_OK) return 1;
  evh_post(rt, evh_isolate_main_port(iso), "hello", 5, 0);
  if (evh_receiver_receive(rx, INT64_C(30000000000), &m) != EVH_OK) return 1;
  ok = evh_message_data(m, &n) != NULL && n == 5 && memcmp(evh_message_data(m, &n), "hello", 5) == 0;
  evh_message_destroy(m);
  evh_isolate_release(iso);
  evh_receiver_destroy(rx);
  if (evh_runtime_destroy(rt) != EVH_OK || !ok) return 1;
  printf("consumer (C, evh %s): echo ok\n", evh_version_string());
  return 0;
}
