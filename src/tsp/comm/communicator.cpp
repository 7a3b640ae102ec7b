// Communicators over any comm::Backend: dup, split and barrier (watched by the comm watchdog and
// counted in the ledger), free, the scratch buffer. The transport itself lives in the backend.
#include "tsp/comm/communicator.h"

#include <utility>

#include "tsp/comm/watchdog.h"
#include "tsp/core/check.h"

namespace tsp::comm {

Communicator::Communicator(std::unique_ptr<Backend> backend, std::string name)
    : name_(std::move(name)) {
  TSP_CHECK(backend != nullptr, "Communicator '", name_, "': null backend");
  rank_ = backend->rank();
  size_ = backend->size();
  world_ranks_ = backend->world_ranks();
  backend_ = std::move(backend);
}

Communicator Communicator::dup(std::string name) const {
  TSP_CHECK(valid(), "dup of a null communicator");
  std::unique_ptr<Backend> out;
  {
    const InFlight watch(*this, "communicator dup", 0);
    out = backend_->dup();
  }
  return Communicator(std::move(out), std::move(name));
}

Communicator::~Communicator() = default;

Communicator::Communicator(Communicator&& other) noexcept
    : backend_(std::move(other.backend_)),
      rank_(std::exchange(other.rank_, 0)),
      size_(std::exchange(other.size_, 0)),
      name_(std::move(other.name_)),
      world_ranks_(std::move(other.world_ranks_)),
      ledger_(std::exchange(other.ledger_, TrafficLedger{})),
      scratch_(std::exchange(other.scratch_, Tensor{})) {}

Communicator& Communicator::operator=(Communicator&& other) noexcept {
  if (this != &other) {
    backend_ = std::move(other.backend_);
    rank_ = std::exchange(other.rank_, 0);
    size_ = std::exchange(other.size_, 0);
    name_ = std::move(other.name_);
    world_ranks_ = std::move(other.world_ranks_);
    ledger_ = std::exchange(other.ledger_, TrafficLedger{});
    scratch_ = std::exchange(other.scratch_, Tensor{});
  }
  return *this;
}

void Communicator::free() {
  if (!backend_) return;
  const std::unique_ptr<Backend> b = std::move(backend_);
  b->free();
}

Communicator Communicator::split(int color, int key, std::string name) const {
  TSP_CHECK(valid(), "split of a null communicator");
  TSP_CHECK_GE(color, 0, "Communicator::split: colors must be non-negative");
  std::unique_ptr<Backend> out;
  {
    const InFlight watch(*this, "communicator split", 0);
    out = backend_->split(color, key);
  }
  return Communicator(std::move(out), std::move(name));
}

void* Communicator::scratch(size_t bytes) {
  if (!scratch_.defined() || scratch_.nbytes() < bytes) {
    scratch_ = Tensor{};  // free the old buffer first: the peak is the new size, not the sum
    const int64_t words = static_cast<int64_t>((bytes + sizeof(int64_t) - 1) / sizeof(int64_t));
    scratch_ = Tensor::empty({words}, DType::i64, MemCategory::comm);
  }
  return scratch_.raw();
}

void Communicator::barrier() {
  TSP_CHECK(valid(), "barrier on a null communicator");
  {
    const InFlight watch(*this, "barrier", 0);
    backend_->barrier();
  }
  ledger_.record(CommOp::barrier, {});
}

}  // namespace tsp::comm
