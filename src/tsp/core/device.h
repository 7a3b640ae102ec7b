// Where a tensor's memory lives (Device) and the allocator interface every device implements; the
// CPU one is the accounting allocator of memory.h. A GPU backend adds an enum value and registers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tsp/core/memory.h"

namespace tsp {

// The devices this build knows. Storage, Tensor and the kernel backends (kernels/backend.h) are
// keyed by it; a CUDA or HIP backend adds its value here (docs/architecture.md, "Backend seam").
enum class Device : uint8_t {
  cpu,
};
// Registry slots: every Device value (and values a test makes up) is below this.
inline constexpr int kMaxDevices = 8;

// "cpu"; values without a name print as "device<N>".
std::string device_name(Device device);

// Allocates a device's memory under a MemCategory. The CPU allocator is MemoryLedger::process()
// (64-byte aligned, per-category accounting, page arena); a device allocator keeps its own
// accounting the same way. Registered objects live until the process exits (Storage frees with
// the allocator it allocated with), so implementations must not be destroyed while registered.
class DeviceAllocator {
 public:
  // Throws OutOfMemory; zero bytes returns a valid, distinct pointer.
  virtual void* allocate(size_t bytes, MemCategory category) = 0;
  virtual void deallocate(void* ptr, size_t bytes, MemCategory category) noexcept = 0;
  // Sets `bytes` bytes at ptr to zero (Tensor::zeros).
  virtual void fill_zero(void* ptr, size_t bytes) = 0;

 protected:
  ~DeviceAllocator() = default;  // never deleted through this interface
};

// The allocator of `device`; throws DeviceError when none is registered.
DeviceAllocator& allocator_for(Device device);
// Installs `allocator` for `device` (nullptr removes it) and returns the previous one. The CPU
// allocator is installed from the start; storage allocated before a swap is freed by the
// allocator that allocated it.
DeviceAllocator* register_allocator(Device device, DeviceAllocator* allocator);

}  // namespace tsp
