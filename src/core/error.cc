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
