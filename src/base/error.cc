#include <evh/error.h>

namespace evh {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "evh"; }
  std::string message(int code) const override {
    switch (static_cast<Errc>(code)) {
      case Errc::ok:
        return "success";
      case Errc::port_closed:
        return "the destination port is closed";
      case Errc::unknown_port:
        return "no port with that id exists in this runtime";
      case Errc::shutting_down:
        return "the runtime is shutting down";
      case Errc::invalid_argument:
        return "invalid argument";
      case Errc::timed_out:
        return "timed out";
      case Errc::isolate_dead:
        return "the isolate has been destroyed";
      case Errc::wrong_thread:
        return "called from outside the isolate's own turn";
      case Errc::owner_died:
        return "the lock's previous holder died holding it (acquired; repair and mark consistent)";
      case Errc::not_recoverable:
        return "the lock is not recoverable: an owner-died state was never marked consistent";
      case Errc::not_owner:
        return "the calling isolate does not hold this lock";
      case Errc::would_deadlock:
        return "the calling isolate already holds this lock";
      case Errc::busy:
        return "the lock is held by another isolate";
    }
    return "unknown evh error " + std::to_string(code);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace evh
