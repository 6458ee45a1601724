// Intel TDX launch measurements: MRTD from TDVF metadata, RTMR[0..2] for QEMU direct kernel boot.
export * from "./errors.js";
export * from "./tdvf.js";
export * from "./mrtd.js";
export * from "./memory.js";
export * from "./events.js";
export * from "./tdhob.js";
export * from "./authenticode.js";
export * from "./bzimage.js";
export * from "./measure.js";
export * from "./known-firmware.js";
export * from "./qemu-acpi.js";
