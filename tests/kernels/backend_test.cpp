// The kernel backend seam: the public kernel functions route by the operands' device to the
// registered backend, refuse mixed devices and devices without kernels, and the CPU is the default.
#include "tsp/kernels/backend.h"
#include "tsp/kernels/decode_attention.h"
#include "tsp/kernels/decode_linear.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/kernels/cpu_backend.h"

namespace tsp::kernels {
namespace {

using testing::random_tensor;

// A device value this build has no allocator or backend for; the tests serve it from host memory.
constexpr Device kTestDevice = static_cast<Device>(kMaxDevices - 1);

class HostMemoryAllocator final : public DeviceAllocator {
 public:
  void* allocate(size_t bytes, MemCategory) override {
    return std::aligned_alloc(kTensorAlignment, (bytes / kTensorAlignment + 1) * kTensorAlignment);
  }
  void deallocate(void* ptr, size_t, MemCategory) noexcept override { std::free(ptr); }
  void fill_zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
};

// Records the name of every kernel it is asked to run and does nothing else.
class RecordingBackend final : public KernelBackend {
 public:
  std::vector<std::string> calls;
  const Tensor* gemm_a = nullptr;
  float gemm_alpha = 0.f;

  void gemm(const Tensor& a, const Tensor&, Tensor&, const GemmOptions& options) override {
    record("gemm");
    gemm_a = &a;
    gemm_alpha = options.alpha;
  }
  void flash_attention_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               Tensor&, Tensor&, const FlashAttentionOptions&,
                               FlashAttentionStats*) override {
    record("flash_attention_forward");
  }
  void flash_attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&,
                                const FlashAttentionOptions&, FlashAttentionStats*) override {
    record("flash_attention_backward");
  }
  void merge_partials(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&) override {
    record("merge_partials");
  }
  void rmsnorm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                       const RmsNormOptions&) override {
    record("rmsnorm_forward");
  }
  void rmsnorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        const Tensor&) override {
    record("rmsnorm_backward");
  }
  void rope_forward(const Tensor&, const RopeTable&) override { record("rope_forward"); }
  void rope_backward(const Tensor&, const RopeTable&) override { record("rope_backward"); }
  void swiglu_forward(const Tensor&, const Tensor&, const Tensor&) override { record("swiglu_forward"); }
  void swiglu_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) override {
    record("swiglu_backward");
  }
  void bias_add_forward(const Tensor&, const Tensor&) override { record("bias_add_forward"); }
  void bias_backward(const Tensor&, const Tensor&, bool) override { record("bias_backward"); }
  void embedding_forward(const Tensor&, const Tensor&, const Tensor&, const EmbeddingOptions&) override {
    record("embedding_forward");
  }
  void embedding_backward(const Tensor&, const Tensor&, const Tensor&, const EmbeddingOptions&) override {
    record("embedding_backward");
  }
  void cross_entropy_chunk_forward(const Tensor&, const Tensor&, int64_t, const Tensor&, CrossEntropyState&,
                                   const CrossEntropyOptions&) override {
    record("cross_entropy_chunk_forward");
  }
  CrossEntropyTotals cross_entropy_finalize(const CrossEntropyState&, const Tensor&, const Tensor&,
                                            const Tensor&, const CrossEntropyOptions&) override {
    record("cross_entropy_finalize");
    return {};
  }
  void cross_entropy_chunk_backward(const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&,
                                    float, const Tensor&, const Tensor&,
                                    const CrossEntropyOptions&) override {
    record("cross_entropy_chunk_backward");
  }
  CrossEntropyTotals cross_entropy_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                           const Tensor&, const CrossEntropyOptions&) override {
    record("cross_entropy_forward");
    return {};
  }
  void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, float,
                              const Tensor&, const Tensor&, const CrossEntropyOptions&) override {
    record("cross_entropy_backward");
  }
  void adamw_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, const AdamWOptions&,
                  const Tensor&) override {
    record("adamw_step");
  }
  double add_sum_of_squares(const Tensor&, double) override {
    record("add_sum_of_squares");
    return {};
  }
  void decode_attention(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        Tensor&, Tensor&, int64_t) override {
    record("decode_attention");
  }
  void decode_linear(const Tensor&, const Tensor&, Tensor&, float) override { record("decode_linear"); }

 private:
  void record(const char* name) { calls.emplace_back(name); }
};

// Installs `backend` for `device` for the lifetime of the guard, then restores the previous one.
class ScopedBackend {
 public:
  ScopedBackend(Device device, KernelBackend* backend)
      : device_(device), previous_(register_backend(device, backend)) {}
  ~ScopedBackend() { register_backend(device_, previous_); }
  ScopedBackend(const ScopedBackend&) = delete;
  ScopedBackend& operator=(const ScopedBackend&) = delete;

 private:
  Device device_;
  KernelBackend* previous_;
};

class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override { register_allocator(kTestDevice, &allocator_); }
  void TearDown() override { register_allocator(kTestDevice, nullptr); }
  Tensor on_device(const Shape& shape, DType dtype = DType::f32) {
    return Tensor::zeros(shape, dtype, MemCategory::workspace, kTestDevice);
  }
  HostMemoryAllocator allocator_;
};

TEST(Backend, CpuIsRegisteredFromTheStart) {
  EXPECT_NE(dynamic_cast<CpuBackend*>(&backend_for(Device::cpu)), nullptr);
  EXPECT_THROW((void)backend_for(static_cast<Device>(kMaxDevices)), DeviceError);
}

TEST(Backend, CpuTensorsRouteToTheCpuSlot) {
  const Tensor a = random_tensor({4, 3}, DType::f32, 1), b = random_tensor({3, 5}, DType::f32, 2);
  Tensor c = Tensor::zeros({4, 5}, DType::f32, MemCategory::workspace);
  RecordingBackend recording;
  {
    ScopedBackend scoped(Device::cpu, &recording);
    gemm(a, b, c, GemmOptions{.alpha = 2.f});
    Tensor positions = Tensor::zeros({2}, DType::i32, MemCategory::workspace);
    rope_forward(random_tensor({1, 2, 1, 4}, DType::f32, 3), positions);  // the convenience builds a table
    double s = add_sum_of_squares(a, 1.0);
    EXPECT_EQ(s, 0.0);
  }
  EXPECT_EQ(recording.calls, (std::vector<std::string>{"gemm", "rope_forward", "add_sum_of_squares"}));
  EXPECT_EQ(recording.gemm_a, &a);  // operands passed through, not copied
  EXPECT_EQ(recording.gemm_alpha, 2.f);
  for (int64_t i = 0; i < c.numel(); ++i) EXPECT_EQ(c.item_f32(i), 0.f);  // the CPU kernel did not run
  // Restored: the CPU backend computes again.
  gemm(a, b, c);
  EXPECT_NE(c.to_f32().item_f32(0), 0.f);
}

TEST_F(BackendTest, DeviceTensorsRouteToTheirBackend) {
  RecordingBackend recording;
  ScopedBackend scoped(kTestDevice, &recording);
  Tensor a = on_device({4, 3}), b = on_device({3, 5}), c = on_device({4, 5});
  gemm(a, b, c);
  Tensor x = on_device({2, 8}), g = on_device({8});
  rmsnorm_forward(x, g, x, Tensor());  // undefined optional output: skipped by the device check
  swiglu_forward(x, x, x);
  Tensor m = on_device({3}), v = on_device({3}), grad = on_device({3});
  adamw_step(m, v, v, grad, 1, AdamWOptions{});
  Tensor ids = on_device({2}, DType::i32), table = on_device({10, 8});
  embedding_forward(ids, table, x);
  decode_linear(x, table, x);
  Tensor q = on_device({1, 1, 2, 4}), kv = on_device({1, 3, 2, 4}), pos = on_device({3}, DType::i32);
  Tensor lse = on_device({1, 2, 1});
  decode_attention(q, kv, kv, pos, pos, q, lse);
  EXPECT_EQ(recording.calls, (std::vector<std::string>{"gemm", "rmsnorm_forward", "swiglu_forward",
                                                       "adamw_step", "embedding_forward",
                                                       "decode_linear", "decode_attention"}));
}

TEST_F(BackendTest, DeviceWithoutKernelsIsAClearError) {
  Tensor a = on_device({4, 3}), b = on_device({3, 5}), c = on_device({4, 5});
  try {
    gemm(a, b, c);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("no kernel backend for device device7"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(add_sum_of_squares(a, 0.0), DeviceError);
}

TEST_F(BackendTest, MixedDevicesAreRefused) {
  RecordingBackend recording;
  ScopedBackend scoped(kTestDevice, &recording);
  Tensor a = on_device({4, 3}), c = on_device({4, 5});
  Tensor b = Tensor::zeros({3, 5}, DType::f32, MemCategory::workspace);
  try {
    gemm(a, b, c);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("gemm: operands on different devices"), std::string::npos) << what;
    EXPECT_NE(what.find("f32[4, 3] strides [3, 1] on device7"), std::string::npos) << what;
    EXPECT_NE(what.find("f32[3, 5] strides [5, 1] on cpu"), std::string::npos) << what;
  }
  EXPECT_THROW(swiglu_forward(b, a.slice(1, 0, 3), a), DeviceError);
  EXPECT_TRUE(recording.calls.empty());
}

TEST(Backend, OperandDeviceSkipsUndefinedTensors) {
  EXPECT_EQ(operand_device("op", Tensor(), Tensor()), Device::cpu);
  const Tensor t = Tensor::zeros({2}, DType::f32, MemCategory::workspace);
  EXPECT_EQ(operand_device("op", Tensor(), t, Tensor()), Device::cpu);
}

}  // namespace
}  // namespace tsp::kernels
