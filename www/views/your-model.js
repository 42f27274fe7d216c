// Your model: where it runs (the device badge), what it holds in memory, and the LoRA form used
// when a folder is loaded.
import { $ } from "./dom.js";

/** The badge and the model line, from the worker's report (`info`). */
export function renderModel({ model, info, backend, gpuFailure }) {
  const d = $("device");
  const label = model.builtIn ? "" : `${model.label} · `;
  const lora = info.lora ? ` · ${info.lora}` : "";
  const params = `${label}${info.parameterCount.toLocaleString()} parameters${lora}`;
  if (info.isGpu) {
    d.textContent = `WebGPU · ${info.device.replace(/^GPU: /, "")} · ${params}`;
  } else {
    const [why, hint] = cpuReason(backend, gpuFailure);
    d.textContent = `CPU (${why}) · ${params}${hint ? ` — ${hint}` : ""}`;
  }
  d.dataset.backend = info.isGpu ? "webgpu" : "cpu";
  const name = model.builtIn ? "The built-in story model" : model.label;
  $("model-info").textContent =
    `${name}${info.chat ? " (chat template)" : ""}: ${info.memory.summary}.`;
  $("builtin").hidden = !!model.builtIn;
  $("retry-gpu").hidden = !gpuFailure || info.isGpu;
}

/** Why the model runs on the CPU, and what the user can do about it. */
function cpuReason(backend, gpuFailure) {
  if (gpuFailure) {
    const when = new Date(gpuFailure.time).toLocaleString();
    return [`the GPU ${gpuFailure.adapter} failed here on ${when}: ${gpuFailure.reason}`, ""];
  }
  if (backend === "cpu") return ["chosen", ""];
  if (!("gpu" in navigator))
    return [
      "no WebGPU in this browser",
      "For speed, use a recent Chrome or Edge (on Linux: enable chrome://flags/#enable-unsafe-webgpu).",
    ];
  return [
    "WebGPU offers no usable adapter here",
    "On Linux, enable chrome://flags/#enable-unsafe-webgpu; elsewhere, check the GPU driver.",
  ];
}

/** The LoRA settings of the form, or null for full fine-tuning. */
export const loraChoice = () =>
  $("use-lora").checked
    ? {
        r: Number($("lora-r").value),
        alpha: Number($("lora-alpha").value),
        all_linear: $("lora-all").checked,
      }
    : null;
