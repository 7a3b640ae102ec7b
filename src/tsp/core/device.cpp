// The device registry of allocators, with the CPU allocator (the accounting ledger) installed
// from the start, and device names.
#include "tsp/core/device.h"

#include <array>
#include <atomic>
#include <cstring>

#include "tsp/core/check.h"

namespace tsp {
namespace {

// The host: every buffer through the accounting ledger, as before devices existed.
class HostAllocator final : public DeviceAllocator {
 public:
  void* allocate(size_t bytes, MemCategory category) override {
    return MemoryLedger::process().allocate(bytes, category);
  }
  void deallocate(void* ptr, size_t bytes, MemCategory category) noexcept override {
    MemoryLedger::process().deallocate(ptr, bytes, category);
  }
  void fill_zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
};

// Constant-initialised and trivially destructible: usable by static tensors during exit.
constinit HostAllocator host_allocator;
constinit std::array<std::atomic<DeviceAllocator*>, kMaxDevices> allocators{&host_allocator};

size_t slot(Device device) {
  const size_t i = static_cast<uint8_t>(device);
  TSP_CHECK_T(DeviceError, i < allocators.size(), "device ", static_cast<int>(i),
              " is outside the registry (", kMaxDevices, " slots)");
  return i;
}

}  // namespace

std::string device_name(Device device) {
  switch (device) {
    case Device::cpu: return "cpu";
  }
  return "device" + std::to_string(static_cast<int>(device));
}

DeviceAllocator& allocator_for(Device device) {
  DeviceAllocator* a = allocators[slot(device)].load(std::memory_order_acquire);
  TSP_CHECK_T(DeviceError, a != nullptr, "no allocator for device ", device_name(device),
              ": this build has no backend for it");
  return *a;
}

DeviceAllocator* register_allocator(Device device, DeviceAllocator* allocator) {
  return allocators[slot(device)].exchange(allocator, std::memory_order_acq_rel);
}

}  // namespace tsp
