// Typed exceptions of the engine: every failure that a caller can act on has its own type.
// Thrown at API and input boundaries (see check.h); cli/main catches tsp::Error and aborts all ranks.
#pragma once

#include <stdexcept>
#include <string>

namespace tsp {

// Base of all engine errors. what() holds a complete, user-readable message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value or option outside what the engine supports (degrees, sizes, flags).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// Tensor shapes that do not fit together; the message names every shape involved.
class ShapeError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// A dtype, or a combination of dtypes, that an operation does not support.
class DTypeError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// A view whose strides or base address break a kernel's layout requirement.
class LayoutError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// A tensor on a device the operation cannot reach: host access to device memory, operands on
// different devices, or a device without an allocator or kernel backend (core/device.h).
class DeviceError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// Missing, unreadable, truncated or corrupt files.
class IoError : public Error {
 public:
  using Error::Error;
};

// A failed MPI call or a peer that broke the protocol (raised in comm/ only).
class CommError : public Error {
 public:
  using Error::Error;
};

// The allocator could not satisfy a request.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// A broken internal invariant: a bug in the engine, not in the caller's input.
class InternalError : public Error {
 public:
  using Error::Error;
};

}  // namespace tsp
