// Owned MPI communicators: dup, split, free, with errors returned (and thrown as CommError).
#include "tsp/comm/communicator.h"

#include <numeric>
#include <utility>

#include "tsp/comm/mpi_environment.h"
#include "tsp/comm/watchdog.h"
#include "tsp/core/check.h"

namespace tsp::comm {

namespace {
// Frees a freshly created MPI_Comm unless ownership was handed over (the constructor below may
// throw before a Communicator owns it; a throwing constructor runs no destructor).
class CommGuard {
 public:
  explicit CommGuard(MPI_Comm c) : comm_(c) {}
  ~CommGuard() {
    if (comm_ != MPI_COMM_NULL && !MpiEnvironment::is_finalized()) MPI_Comm_free(&comm_);
  }
  CommGuard(const CommGuard&) = delete;
  CommGuard& operator=(const CommGuard&) = delete;
  MPI_Comm release() { return std::exchange(comm_, MPI_COMM_NULL); }

 private:
  MPI_Comm comm_;
};

// World rank of each member of `comm` (local: groups only, no communication).
std::vector<int> translate_to_world(MPI_Comm comm, int size) {
  std::vector<int> mine(static_cast<size_t>(size)), world(static_cast<size_t>(size));
  std::iota(mine.begin(), mine.end(), 0);
  MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  check_mpi(MPI_Comm_group(comm, &group), "MPI_Comm_group");
  check_mpi(MPI_Comm_group(MPI_COMM_WORLD, &world_group), "MPI_Comm_group(world)");
  const int rc = MPI_Group_translate_ranks(group, size, mine.data(), world_group, world.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  check_mpi(rc, "MPI_Group_translate_ranks");
  return world;
}
}  // namespace

Communicator::Communicator(MPI_Comm owned, std::string name) : name_(std::move(name)) {
  CommGuard guard(owned);
  check_mpi(MPI_Comm_set_errhandler(owned, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(owned, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(owned, &size_), "MPI_Comm_size");
  world_ranks_ = translate_to_world(owned, size_);
  comm_ = guard.release();
}

Communicator Communicator::dup(MPI_Comm comm, std::string name) {
  MPI_Comm out = MPI_COMM_NULL;
  {
    const InFlight watch("MPI_Comm_dup", name, nullptr, 0);  // group: that of `comm`
    check_mpi(MPI_Comm_dup(comm, &out), "MPI_Comm_dup");
  }
  return Communicator(out, std::move(name));
}

Communicator::~Communicator() { release(); }

Communicator::Communicator(Communicator&& other) noexcept
    : comm_(std::exchange(other.comm_, MPI_COMM_NULL)),
      rank_(std::exchange(other.rank_, 0)),
      size_(std::exchange(other.size_, 0)),
      name_(std::move(other.name_)),
      world_ranks_(std::move(other.world_ranks_)),
      ledger_(std::exchange(other.ledger_, TrafficLedger{})),
      scratch_(std::exchange(other.scratch_, Tensor{})) {}

Communicator& Communicator::operator=(Communicator&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    rank_ = std::exchange(other.rank_, 0);
    size_ = std::exchange(other.size_, 0);
    name_ = std::move(other.name_);
    world_ranks_ = std::move(other.world_ranks_);
    ledger_ = std::exchange(other.ledger_, TrafficLedger{});
    scratch_ = std::exchange(other.scratch_, Tensor{});
  }
  return *this;
}

void Communicator::release() noexcept {
  if (comm_ != MPI_COMM_NULL && !MpiEnvironment::is_finalized()) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

void Communicator::free() {
  if (comm_ == MPI_COMM_NULL) return;
  MPI_Comm c = std::exchange(comm_, MPI_COMM_NULL);
  check_mpi(MPI_Comm_free(&c), "MPI_Comm_free");
}

Communicator Communicator::split(int color, int key, std::string name) const {
  TSP_CHECK(valid(), "split of a null communicator");
  TSP_CHECK_GE(color, 0, "Communicator::split: colors must be non-negative");
  MPI_Comm out = MPI_COMM_NULL;
  {
    const InFlight watch(*this, "MPI_Comm_split", 0);
    check_mpi(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split");
  }
  return Communicator(out, std::move(name));
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
    check_mpi(MPI_Barrier(comm_), "MPI_Barrier");
  }
  ledger_.record(CommOp::barrier, {});
}

}  // namespace tsp::comm
