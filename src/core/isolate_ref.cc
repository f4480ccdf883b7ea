#include <evh/isolate.h>

namespace evh {

void IsolateRef::retain(Isolate* isolate) noexcept {
  detail::retain(isolate);
}
void IsolateRef::release(Isolate* isolate) noexcept {
  detail::release(isolate);
}

}  // namespace evh
