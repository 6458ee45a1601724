// Intel TDX launch measurements: MRTD from TDVF metadata, RTMR[0..2] for QEMU direct kernel boot.
export * from "./errors.js";
export * from "./tdvf.js";
export * from "./mrtd.js";
