// Differential harness: runs mosaik's independent TDX measurement code (crates.io `mosaik` 0.3.13,
// src/tee/tdx/builder/mrtd.rs, placed next to this file by regen.sh, never committed) over a grid of
// inputs and prints JSON lines that test/images/tdx-reference.test.ts compares with images/tdx.
#[path = "../vendor/mrtd.rs"]
mod mrtd;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let fw = std::fs::read(&a[1]).expect("firmware");
    let kernel = std::fs::read(&a[2]).expect("kernel");
    let initrd_file = std::fs::read(&a[3]).expect("initrd");
    println!("{{\"mrtdTwoPass\":\"{}\"}}", hex::encode(mrtd::compute_mrtd(&fw).unwrap()));
    for memory in ["1G", "2G", "2816M", "3G", "4G", "16G"] {
        for with_initrd in [true, false] {
            for cmdline in ["console=ttyS0 root=/dev/vda1 ro", ""] {
                let initrd: &[u8] = if with_initrd { &initrd_file } else { &[] };
                println!(
                    "{{\"memory\":\"{memory}\",\"initrd\":{with_initrd},\"cmdline\":\"{cmdline}\",\"rtmr1\":\"{}\",\"rtmr2\":\"{}\"}}",
                    hex::encode(mrtd::compute_rtmr1(&kernel, initrd, memory)),
                    hex::encode(mrtd::compute_rtmr2(cmdline, initrd))
                );
            }
        }
    }
}
