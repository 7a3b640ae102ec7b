// Helpers shared by the file-format tests (core, model, data): the message of an expected
// exception, byte-exact tensor comparison, and a scoped file-size limit that makes writes fail.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/core/tensor.h"

namespace tsp::testing {

// Runs `fn`, which must throw E, and returns its message; any other outcome is a test failure
// (and returns "").
template <class E, class Fn>
std::string message_of(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no exception";
  return {};
}

template <class Fn>
std::string io_error_of(Fn&& fn) {
  return message_of<IoError>(std::forward<Fn>(fn));
}

// Same shape, same dtype and the same bytes in row-major order (any strides).
inline bool same_bytes(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  const Tensor ca = Tensor::copy_of(a, a.dtype(), MemCategory::workspace);
  const Tensor cb = Tensor::copy_of(b, b.dtype(), MemCategory::workspace);
  return std::memcmp(ca.raw(), cb.raw(), ca.nbytes()) == 0;
}

// Lowers RLIMIT_FSIZE for the scope: writes beyond `bytes` fail with EFBIG (SIGXFSZ is ignored
// meanwhile). Check ok(): some sandboxes refuse the change.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ok_ = ::getrlimit(RLIMIT_FSIZE, &old_) == 0;
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old_;
    lim.rlim_cur = bytes;
    ok_ = ok_ && ::setrlimit(RLIMIT_FSIZE, &lim) == 0;
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  sighandler_t old_handler_;
  bool ok_ = false;
};

}  // namespace tsp::testing
