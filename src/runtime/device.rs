//! Choosing where tensors live: burn's `flex` CPU backend everywhere, wgpu natively (feature
//! `wgpu`) and WebGPU in the browser's single-threaded build (`cfg(gpu)`, build.rs).

use burn::tensor::Device;

#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    /// For people: the adapter name or the CPU backend.
    pub description: String,
    pub is_gpu: bool,
    /// A GPU emulated on the CPU (SwiftShader, lavapipe: wgpu's device type `Cpu`), where a
    /// token takes a large fraction of a second even for the built-in model.
    pub emulated: bool,
    /// The threads the CPU backend splits its kernels over (`None` on a GPU).
    pub threads: Option<usize>,
    /// The largest buffer a kernel may bind, as the GPU granted it (`None` on the CPU). burn
    /// requests the adapter's own limits, above WebGPU's 128 MiB default.
    pub max_buffer: Option<u64>,
}

impl ComputeDevice {
    pub fn cpu() -> Self {
        let threads = cpu_threads();
        let description = match threads {
            1 => "CPU (burn flex backend)".into(),
            n => format!("CPU (burn flex backend, {n} threads)"),
        };
        Self {
            device: Device::flex(),
            description,
            is_gpu: false,
            emulated: false,
            threads: Some(threads),
            max_buffer: None,
        }
    }

    /// The default GPU through wgpu (WebGPU in a browser). Initialised once per process/page.
    #[cfg(gpu)]
    pub async fn gpu() -> crate::Result<Self> {
        use std::sync::Mutex;
        static GPU: Mutex<Option<ComputeDevice>> = Mutex::new(None);
        if let Some(gpu) = GPU.lock().unwrap().clone() {
            return Ok(gpu);
        }
        let (device, setup) = Device::wgpu_options()
            .init_with_setup_async()
            .await
            .map_err(|e| crate::Error::Device(format!("no usable GPU adapter: {e}")))?;
        let info = setup.adapter.get_info();
        // Browsers often hide the adapter name; the device type still tells a real GPU from a
        // software one (SwiftShader reports `Cpu`).
        let name = [info.name, info.driver, info.driver_info]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| "WebGPU adapter".into());
        let limits = setup.device.limits();
        let max_buffer = Some(
            limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
        );
        let gpu = Self {
            device,
            description: format!("GPU: {name} ({:?}, {:?})", info.device_type, info.backend),
            is_gpu: true,
            emulated: info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu,
            threads: None,
            max_buffer,
        };
        *GPU.lock().unwrap() = Some(gpu.clone());
        Ok(gpu)
    }

    /// A build without a GPU backend has none: natively without `wgpu`, and the browser's
    /// threaded build (its CPU backend alone).
    #[cfg(not(gpu))]
    pub async fn gpu() -> crate::Result<Self> {
        Err(crate::Error::Device(if cfg!(target_arch = "wasm32") {
            "the threaded CPU build has no WebGPU: load the single-threaded build (pkg/webdpo.js) \
             to run on the GPU"
                .into()
        } else {
            "this binary was built without wgpu; rebuild with \
             `cargo build --release --features wgpu`"
                .into()
        }))
    }
}

/// The threads burn's CPU kernels may split over: rayon's pool natively and in the browser's
/// threaded build, one in its single-threaded build.
fn cpu_threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "atomics"))]
    return rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    1
}
