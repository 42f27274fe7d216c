// Your model: where it runs (the device badge), what it holds in memory, and the LoRA form used
// when a folder is loaded.
import { $, el } from "./dom.js";

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

/** The model folders kept in this browser (`folders`: name, label, lora, files, bytes, savedAt),
 *  each with Use and Delete; `inUse` names the one loaded. Names and labels are text, never
 *  HTML. */
export function renderFolders(folders, inUse, { use, remove }) {
  const list = $("folders");
  list.replaceChildren(
    ...folders.map((f) => {
      const lora = f.lora ? `LoRA r=${f.lora.r}` : "full fine-tuning";
      const when = new Date(f.savedAt).toLocaleDateString();
      const id = f.name.split(":")[1] ?? f.name;
      const what = `${f.label} · ${(f.bytes / 1e6).toFixed(1)} MB · ${lora} · ${when} · ${id}`;
      const useButton = el("button", { type: "button", class: "use-folder" }, "Use");
      if (f.name === inUse) useButton.dataset.inUse = "1";
      useButton.addEventListener("click", () => use(f.name));
      const deleteButton = el("button", { type: "button", class: "delete-folder" }, "Delete");
      deleteButton.addEventListener("click", () => remove(f));
      const item = el("li", {}, what + (f.name === inUse ? " (in use) " : " "));
      item.dataset.name = f.name;
      item.append(useButton, deleteButton);
      return item;
    }),
  );
  $("folders-title").hidden = folders.length === 0;
}
