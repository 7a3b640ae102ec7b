// Devices of storage and tensors: the CPU allocator is the accounting ledger, a registered test
// allocator serves another device, and views, slices and copies keep the device.
#include "tsp/core/device.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "tsp/core/error.h"
#include "tsp/core/tensor.h"

namespace tsp {
namespace {

// A device value this build has no name or allocator for, served by host memory in the tests.
constexpr Device kTestDevice = static_cast<Device>(kMaxDevices - 1);

class CountingAllocator final : public DeviceAllocator {
 public:
  void* allocate(size_t bytes, MemCategory) override {
    ++allocations;
    live_bytes += static_cast<int64_t>(bytes);
    return std::aligned_alloc(kTensorAlignment,
                              (bytes + kTensorAlignment) / kTensorAlignment * kTensorAlignment);
  }
  void deallocate(void* ptr, size_t bytes, MemCategory) noexcept override {
    live_bytes -= static_cast<int64_t>(bytes);
    std::free(ptr);
  }
  void fill_zero(void* ptr, size_t bytes) override {
    ++zero_fills;
    std::memset(ptr, 0, bytes);
  }
  int allocations = 0;
  int zero_fills = 0;
  int64_t live_bytes = 0;
};

// Installs a CountingAllocator for kTestDevice for one test.
class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { EXPECT_EQ(register_allocator(kTestDevice, &allocator_), nullptr); }
  void TearDown() override { EXPECT_EQ(register_allocator(kTestDevice, nullptr), &allocator_); }
  CountingAllocator allocator_;
};

TEST(Device, Names) {
  EXPECT_EQ(device_name(Device::cpu), "cpu");
  EXPECT_EQ(device_name(kTestDevice), "device" + std::to_string(kMaxDevices - 1));
}

TEST(Device, CpuTensorsAreAccountedByTheLedger) {
  const MemStats before = MemoryLedger::process().stats(MemCategory::activations);
  {
    Tensor t = Tensor::zeros({4, 8}, DType::f32, MemCategory::activations);
    EXPECT_EQ(t.device(), Device::cpu);
    EXPECT_EQ(&allocator_for(Device::cpu), &allocator_for(t.device()));
    const MemStats during = MemoryLedger::process().stats(MemCategory::activations);
    EXPECT_EQ(during.live_bytes - before.live_bytes, 4 * 8 * 4);
    EXPECT_EQ(during.allocations - before.allocations, 1);
  }
  EXPECT_EQ(MemoryLedger::process().stats(MemCategory::activations).live_bytes, before.live_bytes);
}

TEST(Device, UnregisteredDeviceIsAClearError) {
  try {
    (void)Tensor::empty({2}, DType::f32, MemCategory::workspace, kTestDevice);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("no allocator for device device7"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)allocator_for(static_cast<Device>(kMaxDevices)), DeviceError);
}

TEST_F(DeviceTest, AllocationIsRoutedByDevice) {
  const MemStats before = MemoryLedger::process().total();
  {
    Tensor t = Tensor::zeros({3, 5}, DType::bf16, MemCategory::weights, kTestDevice);
    EXPECT_EQ(t.device(), kTestDevice);
    EXPECT_EQ(t.category(), MemCategory::weights);
    EXPECT_EQ(allocator_.allocations, 1);
    EXPECT_EQ(allocator_.zero_fills, 1);
    EXPECT_EQ(allocator_.live_bytes, 3 * 5 * 2);
    // The host ledger saw nothing.
    EXPECT_EQ(MemoryLedger::process().total().allocations, before.allocations);
    EXPECT_EQ(MemoryLedger::process().total().live_bytes, before.live_bytes);
    const auto* p = static_cast<const uint16_t*>(t.device_ptr());
    for (int i = 0; i < 15; ++i) EXPECT_EQ(p[i], 0);
  }
  EXPECT_EQ(allocator_.live_bytes, 0);
}

TEST_F(DeviceTest, ViewsSlicesAndCopiesKeepTheDevice) {
  Tensor t = Tensor::empty({2, 3, 4}, DType::f32, MemCategory::workspace, kTestDevice);
  EXPECT_EQ(t.slice(1, 1, 2).device(), kTestDevice);
  EXPECT_EQ(t.select(0, 1).device(), kTestDevice);
  EXPECT_EQ(t.view({6, 4}).device(), kTestDevice);
  EXPECT_EQ(t.transpose(0, 2).device(), kTestDevice);
  Tensor copy = t;
  EXPECT_EQ(copy.device(), kTestDevice);
  EXPECT_EQ(static_cast<char*>(t.slice(2, 1, 2).device_ptr()) - static_cast<char*>(t.device_ptr()), 4);

  Tensor h = Tensor::zeros({2, 3, 4}, DType::f32, MemCategory::workspace);
  EXPECT_EQ(h.slice(1, 1, 2).device(), Device::cpu);
  EXPECT_EQ(h.select(0, 1).device(), Device::cpu);
  EXPECT_EQ(h.view({6, 4}).device(), Device::cpu);
  EXPECT_EQ(h.transpose(0, 2).device(), Device::cpu);
  EXPECT_EQ(Tensor::copy_of(h, DType::bf16, MemCategory::workspace).device(), Device::cpu);
  EXPECT_EQ(h.to_f32().device(), Device::cpu);
  EXPECT_EQ(h.raw(), h.device_ptr());
}

TEST_F(DeviceTest, HostOperationsRefuseDeviceTensors) {
  Tensor d = Tensor::empty({2, 3}, DType::f32, MemCategory::workspace, kTestDevice);
  Tensor h = Tensor::zeros({2, 3}, DType::f32, MemCategory::workspace);
  try {
    (void)d.data<float>();
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("host access to f32[2, 3]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("device7"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)d.raw(), DeviceError);
  EXPECT_THROW((void)d.item_f32(0), DeviceError);
  EXPECT_THROW(d.fill(1.f), DeviceError);
  EXPECT_THROW(d.zero(), DeviceError);
  EXPECT_THROW(d.copy_from(h), DeviceError);
  EXPECT_THROW(h.copy_from(d), DeviceError);
  EXPECT_THROW((void)Tensor::copy_of(d, DType::f32, MemCategory::workspace), DeviceError);
  EXPECT_THROW((void)d.to_f32(), DeviceError);
  EXPECT_EQ(d.describe(), "f32[2, 3] strides [3, 1]");
  EXPECT_THROW((void)Tensor().device(), InvalidArgument);
}

}  // namespace
}  // namespace tsp
