//! QEMU `mps2-an500` board: runs the door app's self-test and the int8
//! engine check, logs over semihosting (defmt frames, decoded on the host by
//! `defmt-print`) and ends QEMU with exit status 0 (pass) or 1 (fail) for
//! the test harness.
#![no_std]
#![no_main]

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::entry;
use door_app::clock::systick_interrupts;
use door_app::engine_check::{self, EngineCheck};
use qemu_mps2_an500 as _; // panic and fault handlers, defmt transport

/// Length of the calibration loop, in instructions (`cortex_m::asm::delay`
/// runs a two-instruction loop once per two requested cycles).
const CALIBRATION_INSTRUCTIONS: u32 = 4_000_000;

/// SysTick's reload value: the full 24-bit range.
const SYSTICK_RELOAD: u32 = 0x00FF_FFFF;

#[entry]
fn main() -> ! {
    defmt::info!(
        "facegate door firmware {} on QEMU mps2-an500 (Cortex-M7)",
        env!("CARGO_PKG_VERSION")
    );
    let mut report = door_app::demo::run();
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        defmt::error!("core peripherals already taken");
        semihosting::process::exit(1)
    };
    // SysTick as a stopwatch. Under `-icount shift=0` QEMU's virtual time is
    // one nanosecond per instruction, so ticks convert to instructions, with
    // the ratio calibrated on a loop of known length. The counter is 24 bits
    // (about 335 M instructions here); its interrupt counts the wraps, so
    // long runs (the MobileFaceNet-size network) are timed whole.
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYSTICK_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    // The cleared counter reloads on its first tick without an interrupt:
    // start counting wraps from there.
    while SYST::get_current() == 0 {}
    let now = || -> u64 {
        loop {
            let wraps = systick_interrupts();
            let current = SYST::get_current();
            if systick_interrupts() == wraps {
                return u64::from(wraps) * (u64::from(SYSTICK_RELOAD) + 1)
                    + u64::from(SYSTICK_RELOAD - current);
            }
        }
    };
    let mut elapsed = |f: &mut dyn FnMut()| -> u32 {
        let start = now();
        f();
        u32::try_from(now() - start).unwrap_or(u32::MAX)
    };
    let cal_ticks = elapsed(&mut || cortex_m::asm::delay(CALIBRATION_INSTRUCTIONS)).max(1);
    // Ticks of one embedding → (instructions, instructions per 1000 MACs).
    let cost = |ticks: u32, macs: u32| {
        let instructions =
            u64::from(ticks) * u64::from(CALIBRATION_INSTRUCTIONS) / u64::from(cal_ticks);
        (instructions, instructions * 1000 / u64::from(macs.max(1)))
    };

    if engine_check::dsp_kernel_matches_portable() {
        defmt::info!(
            "engine: DSP (SMLAD) dot-product kernels equal the portable ones on 200 random vectors"
        );
        report.passed += 1;
    } else {
        defmt::error!("engine: DSP dot product differs from the portable kernel");
        report.failed += 1;
    }
    if let Some(layers) = engine_check::kernels_match_reference() {
        defmt::info!(
            "engine: every convolution fast path equals the reference kernel on {} random layers",
            layers
        );
        report.passed += 1;
    } else {
        report.failed += 1;
    }
    // The engine's arena: the `mfn` budget of 512 KiB out of the board's
    // 4 MiB RAM (nano needs 147 KiB; the MobileFaceNet-size check below fits
    // because its blob keeps its largest expansions in row bands).
    let Some(arena) = cortex_m::singleton!(: [i8; 512 * 1024] = [0; 512 * 1024]) else {
        defmt::error!("engine: arena already taken");
        semihosting::process::exit(1)
    };
    match engine_check::run(arena, &mut elapsed) {
        EngineCheck::Equal {
            faces,
            max_ticks,
            macs,
        } => {
            defmt::info!(
                "engine: {} embeddings equal the host engine's bit for bit",
                faces
            );
            let (instructions, per_kilo_mac) = cost(max_ticks, macs);
            defmt::info!(
                "engine cost: {} instructions per embedding (meaningful under -icount), {} MACs, {} instructions per 1000 MACs",
                instructions,
                macs,
                per_kilo_mac
            );
            report.passed += 1;
        }
        EngineCheck::NotCompiledIn => defmt::warn!(
            "engine: check not compiled in (build with FACEGATE_ENGINE_FIXTURE; `cargo xtask` does)"
        ),
        EngineCheck::Failed => report.failed += 1,
    }

    // The MobileFaceNet-size network (203 M MACs; the shipped `mfn` when the
    // fixture has it): it fits the 512 KiB budget, runs bit-equal to the
    // host, and costs this much.
    match engine_check::run_mfn(arena, &mut elapsed) {
        EngineCheck::Equal {
            max_ticks, macs, ..
        } => {
            let (instructions, per_kilo_mac) = cost(max_ticks, macs);
            defmt::info!(
                "engine: mfn embedding equals the host engine's bit for bit; cost {} instructions, {} MACs, {} instructions per 1000 MACs",
                instructions,
                macs,
                per_kilo_mac
            );
            report.passed += 1;
        }
        EngineCheck::NotCompiledIn => {}
        EngineCheck::Failed => report.failed += 1,
    }

    // The door's eyes: a raw photo through the int8 detector, alignment and
    // embedder, equal to the host's run of the same code; and what it costs.
    let Some(scratch) = cortex_m::singleton!(: facegate_core::detect::Scratch = facegate_core::detect::Scratch::new())
    else {
        defmt::error!("detect: scratch already taken");
        semihosting::process::exit(1)
    };
    match door_app::detect_check::run(arena, scratch, &mut elapsed) {
        door_app::detect_check::DetectCheck::Equal {
            faces,
            stats,
            detect_ticks,
            total_ticks,
            net_ticks,
        } => {
            let (detect, _) = cost(detect_ticks, 1);
            let (total, _) = cost(total_ticks, 1);
            let [p64, p48, p32, p16, r, o] = net_ticks.map(|t| cost(t, 1).0);
            defmt::info!(
                "detect nets: P-Net {} instructions a 64-px tile, {} a 48, {} a 32, {} a 16 ({} tiles), R-Net {} a box (x{}), O-Net {} a box (x{})",
                p64,
                p48,
                p32,
                p16,
                stats.tiles,
                r,
                stats.proposals,
                o,
                stats.refined
            );
            defmt::info!(
                "detect: {} face(s), landmarks and the aligned face's embedding equal the host's bit for bit ({})",
                faces,
                stats
            );
            defmt::info!(
                "detect cost: {} instructions to detect, {} from photo to embedding ({} ms at 480 MHz, one instruction a cycle)",
                detect,
                total,
                total / 480_000
            );
            report.passed += 1;
        }
        door_app::detect_check::DetectCheck::NotCompiledIn => defmt::warn!(
            "detect: check not compiled in (needs the raw LFW photos and models/detector)"
        ),
        door_app::detect_check::DetectCheck::Failed => report.failed += 1,
    }

    // The door's question on raw photos: each decision equals the host's.
    match door_app::detect_check::run_door_photos(arena, scratch, &mut elapsed) {
        door_app::detect_check::DoorPhotos::Equal {
            probes,
            accepted,
            max_ticks,
        } => {
            let (instructions, _) = cost(max_ticks, 1);
            defmt::info!(
                "door photos: {} decisions from raw photos equal the host's ({} accepted); at most {} instructions from photo to decision ({} ms at 480 MHz)",
                probes,
                accepted,
                instructions,
                instructions / 480_000
            );
            report.passed += 1;
        }
        door_app::detect_check::DoorPhotos::NotCompiledIn => {
            defmt::warn!("door photos: check not compiled in (needs the raw LFW photos)")
        }
        door_app::detect_check::DoorPhotos::Failed => report.failed += 1,
    }

    // The door end to end: provisioning into the encrypted flash store, faces through engine and matcher.
    let flash = cortex_m::singleton!(: [u8; door_app::door_check::FLASH_LEN] = [0xFF; door_app::door_check::FLASH_LEN]);
    let arena = cortex_m::singleton!(: [i8; 160 * 1024] = [0; 160 * 1024]);
    let passed = match (flash, arena) {
        (Some(flash), Some(arena)) => door_app::door_check::run(flash, arena),
        _ => false,
    };
    if passed {
        defmt::info!("door: provisioning, matching, lock and restart checks passed");
        report.passed += 1;
    } else {
        defmt::error!("door: end-to-end check failed");
        report.failed += 1;
    }

    if report.all_passed() {
        defmt::info!("PASS: door self-test, {} checks", report.passed);
        semihosting::process::exit(0)
    } else {
        defmt::error!("FAIL: door self-test {}", report);
        semihosting::process::exit(1)
    }
}
