//! Choosing where tensors live: burn's `flex` CPU backend everywhere, wgpu natively (feature
//! `wgpu`) and WebGPU in the browser.

use burn::tensor::Device;

#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    /// For people: the adapter name or the CPU backend.
    pub description: String,
    pub is_gpu: bool,
}

impl ComputeDevice {
    pub fn cpu() -> Self {
        Self { device: Device::flex(), description: "CPU (burn flex backend)".into(), is_gpu: false }
    }

    /// The default GPU through wgpu (WebGPU in a browser). Initialised once per process/page.
    #[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
    pub async fn gpu() -> crate::Result<Self> {
        use std::sync::Mutex;
        static GPU: Mutex<Option<ComputeDevice>> = Mutex::new(None);
        if let Some(gpu) = GPU.lock().unwrap().clone() {
            return Ok(gpu);
        }
        let (device, setup) = Device::wgpu_options().init_with_setup_async().await.map_err(|e| crate::Error::Device(format!("no usable GPU adapter: {e}")))?;
        let info = setup.adapter.get_info();
        let name = if info.name.is_empty() { "unnamed adapter".to_string() } else { info.name };
        let gpu = Self { device, description: format!("GPU: {name} ({:?})", info.backend), is_gpu: true };
        *GPU.lock().unwrap() = Some(gpu.clone());
        Ok(gpu)
    }
}
