// Your model: where it runs (the device badge), what it holds in memory, and the LoRA form used
// when a folder is loaded.
import { $, el } from "./dom.js";

/** The badge and the model line, from the worker's report (`info`). */
export function renderModel({ model, info, backend, gpuFailure, deviceChoice }) {
  const d = $("device");
  const label = model.builtIn ? "" : `${model.label} · `;
  const lora = info.lora ? ` · ${info.lora}` : "";
  const params = `${label}${info.parameterCount.toLocaleString()} parameters${lora}`;
  if (info.isGpu) {
    const why = deviceChoice ? ` (${chosenWhy(deviceChoice)})` : "";
    d.textContent = `WebGPU${why} · ${info.device.replace(/^GPU: /, "")} · ${params}`;
  } else {
    const [why, hint] = cpuReason(backend, gpuFailure, deviceChoice);
    const threads = info.threads > 1 ? `, ${info.threads} threads` : "";
    d.textContent = `CPU${threads} (${why}) · ${params}${hint ? ` — ${hint}` : ""}`;
  }
  d.dataset.backend = info.isGpu ? "webgpu" : "cpu";
  const name = model.builtIn ? "The built-in story model" : model.label;
  $("model-info").textContent =
    `${name}${info.chat ? " (chat template)" : ""}: ${info.memory.summary}.`;
  $("builtin").hidden = !!model.builtIn;
  $("retry-gpu").hidden = !gpuFailure || info.isGpu;
  renderDeviceChoice(deviceChoice);
}

const chosenWhy = (choice) => (choice.override ? "your choice" : "faster here, as timed");

/** The timings the device was chosen by, in words, with the override and a new timing; the
 *  element's data holds the figures (ms per pick, the faster) for tests. */
function renderDeviceChoice(choice) {
  const box = $("device-choice");
  box.hidden = !choice;
  if (!choice) return;
  const { webgpu, cpu, faster, override, pickTokens } = choice;
  const ms = (x) => `${x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString()} ms`;
  const line = (name, t) =>
    `${name} ${ms(t.updateMs)} an update, ${ms(t.tokenMs)} a token (${ms(t.pickMs)} a pick)`;
  const cpuName = cpu.threads > 1 ? `the CPU (${cpu.threads} threads)` : "the CPU";
  $("device-timing").textContent =
    `Timed here for this model: ${line(`WebGPU (${webgpu.adapter || webgpu.device})`, webgpu)}; ` +
    `${line(cpuName, cpu)}. A pick counts one update and ${pickTokens} sampled tokens; ` +
    `${faster === "cpu" ? "the CPU" : "WebGPU"} is faster.`;
  Object.assign(box.dataset, {
    faster,
    override: override ?? "",
    webgpuPickMs: webgpu.pickMs,
    cpuPickMs: cpu.pickMs,
  });
  $("device-select").value = override ?? "";
}

/** Why the model runs on the CPU, and what the user can do about it. */
function cpuReason(backend, gpuFailure, deviceChoice) {
  if (gpuFailure) {
    const when = new Date(gpuFailure.time).toLocaleString();
    return [`the GPU ${gpuFailure.adapter} failed here on ${when}: ${gpuFailure.reason}`, ""];
  }
  if (deviceChoice) return [chosenWhy(deviceChoice), ""];
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
