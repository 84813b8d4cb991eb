//! The compute device a command runs on.

#[cfg(not(feature = "wgpu"))]
use anyhow::bail;
use burn::tensor::Device;

use crate::args::Backend;

/// The device for `backend`, or an error saying how to get a build that has it.
pub fn device(backend: Backend) -> anyhow::Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => bail!(
            "--device wgpu: this eft was built without GPU support; rebuild with `cargo install --path crates/eft --features wgpu`"
        ),
    }
}
