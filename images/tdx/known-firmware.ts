// Facts about specific firmware builds that change how their predicted RTMRs should be read,
// keyed by SHA-256 of the image.

export interface KnownFirmware {
  name: string;
  /** True when the build contains a driver that extends RTMRs (edk2 TdTcg2Dxe / CC measurement). */
  extendsRtmrs: boolean;
  note: string;
}

export const KNOWN_TDX_FIRMWARE: Readonly<Record<string, KnownFirmware>> = {
  "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773": {
    name: "Debian bookworm ovmf 2022.11-6+deb12u2 OVMF.fd",
    extendsRtmrs: false,
    note:
      "This Debian OVMF.fd contains no TdTcg2Dxe driver (checked by decompressing its firmware volume; test/images/tdx-firmware.test.ts), " +
      "so a TD booted with it most likely leaves RTMR[0..2] at zero: the predicted RTMRs describe an OVMF built with CC measurement " +
      "(edk2 IntelTdx builds, OvmfPkgX64 with CC_MEASUREMENT_ENABLE, e.g. Ubuntu's OVMF.inteltdx.fd). MRTD is unaffected.",
  },
};
