// The one-process transport: every collective over a group of one is the identity (or a copy from
// the input to the output buffer); point-to-point to oneself goes through a FIFO per tag.
#include "tsp/comm/self/self_backend.h"

#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/core/error.h"

namespace tsp::comm {

namespace {

size_t bytes_of(int count, DType type) { return static_cast<size_t>(count) * dtype_size(type); }

void copy(const void* in, void* out, int count, DType type) {
  if (count > 0 && in != out) std::memmove(out, in, bytes_of(count, type));
}

void check_self(int peer, const char* what) {
  if (peer != 0) TSP_THROW(CommError, "self transport: ", what, " rank ", peer, " in a group of one");
}

// Messages sent to oneself and not yet received, per tag, in order.
using Mailbox = std::map<int, std::deque<std::vector<char>>>;

// Done when posted (collectives, sends) or when its message is in the mailbox (receives).
class SelfOp final : public PendingOp {
 public:
  SelfOp() = default;
  SelfOp(Mailbox* mailbox, void* buf, int count, DType type, int tag)
      : mailbox_(mailbox), buf_(buf), capacity_(count), type_(type), tag_(tag), done_(false) {}

  bool progress(bool block) noexcept override {
    if (done_) return true;
    auto it = mailbox_->find(tag_);
    if (it == mailbox_->end() || it->second.empty()) {
      // One process cannot wait for a message nobody else will send.
      if (block) failed_ = true, done_ = true;
      return done_;
    }
    std::vector<char> message = std::move(it->second.front());
    it->second.pop_front();
    const size_t element = dtype_size(type_);
    if (message.size() > bytes_of(capacity_, type_)) {
      failed_ = true;
    } else {
      std::memcpy(buf_, message.data(), message.size());
      received_ = message.size() % element ? kPartialElementCount : static_cast<int>(message.size() / element);
    }
    done_ = true;
    return true;
  }
  bool failed() const override { return failed_; }
  bool may_still_use_buffers() const override { return false; }
  [[noreturn]] void throw_failure() const override {
    TSP_THROW(CommError, "self transport: a receive (tag ", tag_,
              ") with no matching message, or a message longer than its buffer");
  }
  int received_count() const override { return received_; }
  bool transport_alive() const override { return true; }

 private:
  Mailbox* mailbox_ = nullptr;
  void* buf_ = nullptr;
  int capacity_ = 0;
  DType type_ = DType::f32;
  int tag_ = 0;
  bool done_ = true;
  bool failed_ = false;
  int received_ = 0;
};

class SelfBackend final : public Backend {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<int> world_ranks() const override { return {0}; }
  std::unique_ptr<Backend> dup() const override { return std::make_unique<SelfBackend>(); }
  std::unique_ptr<Backend> split(int color, int key) const override {
    (void)key;
    TSP_CHECK(color >= 0, "self transport: split colour ", color, " must be >= 0");
    return std::make_unique<SelfBackend>();
  }
  void free() override { mailbox_.clear(); }
  void barrier() override {}

  void broadcast(void*, int, DType, int root) override { check_self(root, "broadcast from"); }
  void reduce(void*, int, DType, ReduceOp, int root) override { check_self(root, "reduce to"); }
  void all_reduce(void*, int, DType, ReduceOp) override {}
  void all_gather(const void* in, int count, void* out, DType type) override { copy(in, out, count, type); }
  void all_gather_v(const void* in, void* out, const int* counts, const int* displs, DType type) override {
    copy(in, static_cast<char*>(out) + bytes_of(displs[0], type), counts[0], type);
  }
  void reduce_scatter(const void* in, void* out, const int* counts, DType type, ReduceOp) override {
    copy(in, out, counts[0], type);
  }
  void all_to_all(const void* in, int count, void* out, DType type) override { copy(in, out, count, type); }
  void all_to_all_v(const void* in, const int* send_counts, const int* send_displs, void* out,
                    const int* recv_counts, const int* recv_displs, DType type) override {
    TSP_CHECK(send_counts[0] == recv_counts[0], "self transport: all_to_all_v sends ", send_counts[0],
              " elements to itself but receives ", recv_counts[0]);
    copy(static_cast<const char*>(in) + bytes_of(send_displs[0], type),
         static_cast<char*>(out) + bytes_of(recv_displs[0], type), send_counts[0], type);
  }

  void send(const void* buf, int count, DType type, int dest, int tag) override {
    check_self(dest, "send to");
    const auto* p = static_cast<const char*>(buf);
    mailbox_[tag].emplace_back(p, p + bytes_of(count, type));
  }
  int recv(void* buf, int count, DType type, int source, int tag) override {
    check_self(source, "receive from");
    SelfOp op(&mailbox_, buf, count, type, tag);
    op.progress(true);
    if (op.failed()) op.throw_failure();
    return op.received_count();
  }
  int sendrecv(const void* send_buf, int send_count, int dest, void* recv_buf, int recv_count,
               int source, DType type, int tag) override {
    send(send_buf, send_count, type, dest, tag);
    return recv(recv_buf, recv_count, type, source, tag);
  }

  std::unique_ptr<PendingOp> ibroadcast(void* buf, int count, DType type, int root) override {
    broadcast(buf, count, type, root);
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> ireduce(void* buf, int count, DType type, ReduceOp op, int root) override {
    reduce(buf, count, type, op, root);
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> iall_reduce(void*, int, DType, ReduceOp) override {
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> iall_gather(const void* in, int count, void* out, DType type) override {
    all_gather(in, count, out, type);
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> ireduce_scatter(const void* in, void* out, const int* counts, DType type,
                                             ReduceOp op) override {
    reduce_scatter(in, out, counts, type, op);
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> iall_to_all(const void* in, int count, void* out, DType type) override {
    all_to_all(in, count, out, type);
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> isend(const void* buf, int count, DType type, int dest, int tag) override {
    send(buf, count, type, dest, tag);
    return std::make_unique<SelfOp>();
  }
  std::unique_ptr<PendingOp> irecv(void* buf, int count, DType type, int source, int tag) override {
    check_self(source, "receive from");
    return std::make_unique<SelfOp>(&mailbox_, buf, count, type, tag);
  }
  std::unique_ptr<PendingOp> isendrecv(const void* send_buf, int send_count, int dest, void* recv_buf,
                                       int recv_count, int source, DType type, int tag) override {
    send(send_buf, send_count, type, dest, tag);
    return irecv(recv_buf, recv_count, type, source, tag);
  }

 private:
  Mailbox mailbox_;
};

}  // namespace

Communicator self_communicator(std::string name) {
  return Communicator(std::make_unique<SelfBackend>(), std::move(name));
}

}  // namespace tsp::comm
