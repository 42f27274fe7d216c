//! Choosing where tensors live: burn's `flex` CPU backend everywhere, wgpu natively (feature
//! `wgpu`) and WebGPU in the browser.

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
    /// The largest buffer a kernel may bind, as the GPU granted it (`None` on the CPU). burn
    /// requests the adapter's own limits, above WebGPU's 128 MiB default.
    pub max_buffer: Option<u64>,
}

impl ComputeDevice {
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            description: "CPU (burn flex backend)".into(),
            is_gpu: false,
            emulated: false,
            max_buffer: None,
        }
    }

    /// The default GPU through wgpu (WebGPU in a browser). Initialised once per process/page.
    #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
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
            max_buffer,
        };
        *GPU.lock().unwrap() = Some(gpu.clone());
        Ok(gpu)
    }
}
