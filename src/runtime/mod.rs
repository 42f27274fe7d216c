//! Where the computation runs and how results come back: the device, batched async read-back,
//! and the memory estimate that decides whether a model may train on a device at all.

pub mod device;
pub mod memory;
pub mod readback;

pub use device::ComputeDevice;
pub use memory::{MemoryEstimate, MemoryLimits};
pub use readback::{read_all, read_f32, set_readback_timeout};
