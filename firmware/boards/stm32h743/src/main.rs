//! STM32H743-class door controller (e.g. NUCLEO-H743ZI): the same door as
//! the QEMU image on real peripherals, through embassy-stm32's blocking
//! drivers and embedded-hal 1.0 traits:
//!
//! - provisioning link and face diagnostics: USART3 (PD8 TX, PD9 RX; the
//!   ST-LINK virtual COM port on Nucleo-144 boards), 115200 8N1;
//! - store and audit log: a SPI NOR chip (W25Q128-class, 16 MiB) on SPI1
//!   (PA5 SCK, PB5 MOSI, PB4 MISO, PD14 CS), two partitions — the H7's
//!   internal flash has ECC words that cannot be programmed twice;
//! - camera: a QVGA RGB565 sensor on the DCMI's 8-bit bus (D0–D7 PC6, PC7,
//!   PC8, PC9, PC11, PD3, PE5, PE6; HSYNC PA4, VSYNC PG9, PIXCLK PA6),
//!   frames by DMA into AXI SRAM ([`dcmi_camera`]; built, not tested on
//!   hardware); the door looks whenever the link is idle: int8 MTCNN,
//!   alignment, `nano`, matcher, relay;
//! - lock relay: PB0 (LD1 on the Nucleo) driving the relay's transistor;
//! - device key: 32 bytes provisioned at manufacturing into the last
//!   internal flash sector (0x081E0000, outside the image; protect it with
//!   read-out protection). An erased key sector stops the door: templates
//!   are never sealed with a known key on a real board.
//!
//! `cargo run --release` from this folder flashes it through probe-rs; logs
//! come over RTT.
#![no_std]
#![no_main]

use core::cell::RefCell;

mod dcmi_camera;

use cortex_m_rt::entry;
use defmt_rtt as _;
use door_app::clock::SysTickClock;
use door_app::engine_check::MODEL;
use door_app::nb_link::NbLink;
use door_app::server;
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_stm32::spi::{self, Spi};
use embassy_stm32::time::Hertz;
use embassy_stm32::usart::{self, Uart};
use embedded_hal_bus::spi::ExclusiveDevice;
use facegate_core::audit::FlashAuditLog;
use facegate_core::detect::Scratch;
use facegate_core::door::{Door, EngineEmbedder};
use facegate_core::engine::Model;
use facegate_core::face_service::{Eye, FaceService};
use facegate_core::flash_store::{DeviceKey, FlashStore};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::FACE_BYTES;
use facegate_core::protocol::device::{BoardInfo, DoorStore};
use facegate_spi_nor::SpiNor;
use facegate_spi_nor::partition::Partition;
use panic_probe as _;

/// Core clock after `embassy_stm32::init` with [`clocks`]: 480 MHz.
const CORE_HZ: u32 = 480_000_000;

/// 480 MHz from the internal oscillator (HSI 64 MHz / 4 × 60 / 2, voltage
/// scale 0, as revision V parts allow; the door's photo → decision is
/// counted in instructions at this clock): AHB 240 MHz, APB 120 MHz, and
/// PLL1 Q at 120 MHz for SPI1's kernel clock. Built, not run on hardware.
fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::{
        AHBPrescaler, APBPrescaler, Pll, PllDiv, PllMul, PllPreDiv, PllSource, Sysclk, VoltageScale,
    };
    let mut config = embassy_stm32::Config::default();
    config.rcc.pll1 = Some(Pll {
        source: PllSource::HSI,
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL60,
        divp: Some(PllDiv::DIV2),
        divq: Some(PllDiv::DIV8),
        divr: None,
    });
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.d1c_pre = AHBPrescaler::DIV1;
    config.rcc.ahb_pre = AHBPrescaler::DIV2;
    config.rcc.apb1_pre = APBPrescaler::DIV2;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.apb3_pre = APBPrescaler::DIV2;
    config.rcc.apb4_pre = APBPrescaler::DIV2;
    config.rcc.voltage_scale = VoltageScale::Scale0;
    config
}
/// The SPI NOR chip: 16 MiB (W25Q128).
const NOR_BYTES: u32 = 16 * 1024 * 1024;
/// Store partition: 64 sectors (256 KiB) for 64 people.
const STORE: core::ops::Range<u32> = 0..64 * 4096;
/// Audit partition: 64 sectors (about 10,000 events).
const AUDIT: core::ops::Range<u32> = 64 * 4096..128 * 4096;
/// Where the manufacturing step writes the 32-byte device key.
const KEY_ADDRESS: usize = 0x081E_0000;
/// The engine's arena (the shipped nano model and the detector need
/// less; lent to the detector between embeddings), in AXI SRAM.
const ARENA: usize = 160 * 1024;
/// The camera's frame buffer: QVGA RGB565, in AXI SRAM (the DMA cannot
/// reach DTCM).
const FRAME: usize = 320 * 240 * 2;

/// The frame buffer, word-aligned for the DMA's word transfers.
#[repr(C, align(4))]
struct FrameBuffer([u8; FRAME]);

/// The device key from its internal flash sector.
struct SectorKey([u8; 32]);

impl SectorKey {
    fn read() -> Option<Self> {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            // SAFETY: KEY_ADDRESS..+32 is mapped internal flash on every STM32H743.
            #[allow(unsafe_code)]
            let b = unsafe { core::ptr::read_volatile((KEY_ADDRESS + i) as *const u8) };
            *k = b;
        }
        // An erased sector is no key.
        (key != [0xFF; 32]).then_some(Self(key))
    }
}

impl DeviceKey for SectorKey {
    fn device_key(&self) -> [u8; 32] {
        self.0
    }
}

/// The MCU's 96-bit unique id, padded: the device id signatures are bound to.
fn device_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, d) in id.iter_mut().take(12).enumerate() {
        // SAFETY: the unique-id registers are mapped read-only on every STM32H7.
        #[allow(unsafe_code)]
        let b = unsafe { core::ptr::read_volatile((0x1FF1_E800 + i) as *const u8) };
        *d = b;
    }
    id
}

#[entry]
fn main() -> ! {
    defmt::info!("facegate door {} on STM32H743", env!("CARGO_PKG_VERSION"));
    let Err(why) = run();
    defmt::error!("door stopped: {}", why);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run() -> Result<core::convert::Infallible, &'static str> {
    let p = embassy_stm32::init(clocks());
    let cp = cortex_m::Peripherals::take().ok_or("core peripherals taken")?;
    let clock = SysTickClock::start(cp.SYST, CORE_HZ);
    let model =
        Model::parse(MODEL).map_err(|_| "no model blob compiled in (build with cargo xtask)")?;
    let hash = model.hash();
    let key =
        SectorKey::read().ok_or("device key sector is erased: provision the device key first")?;

    let mut spi_config = spi::Config::default();
    spi_config.frequency = Hertz(8_000_000);
    // MISO on PB4: PA6 is the DCMI's only PIXCLK pin.
    let spi = Spi::new_blocking(p.SPI1, p.PA5, p.PB5, p.PB4, spi_config);
    let cs = Output::new(p.PD14, Level::High, Speed::VeryHigh);
    let device = ExclusiveDevice::new_no_delay(spi, cs).map_err(|_| "SPI chip select")?;
    let mut nor = SpiNor::new(device, NOR_BYTES).map_err(|_| "SPI NOR size")?;
    match nor.jedec_id() {
        Ok(id) => defmt::info!("flash: SPI NOR JEDEC id {=[u8]:02x}", id),
        Err(_) => return Err("SPI NOR does not answer"),
    }
    let nor = RefCell::new(nor);
    let part = |r: core::ops::Range<u32>| Partition::new(&nor, r).ok_or("flash partition");
    let mut store = FlashStore::<_, 64>::open(part(STORE)?, 0..STORE.end - STORE.start, hash, &key)
        .map_err(|_| "the store on the SPI NOR does not open")?;
    let audit = FlashAuditLog::open(part(AUDIT)?, 0..AUDIT.end - AUDIT.start)
        .map_err(|_| "audit log range")?;
    defmt::info!(
        "door: {} people, claimed {}, nonce {}",
        store.len(),
        store.site_key().is_some(),
        store.nonce()
    );

    let relay = Output::new(p.PB0, Level::Low, Speed::Low);
    let arena = cortex_m::singleton!(: [i8; ARENA] = [0; ARENA]).ok_or("arena taken")?;
    let face =
        cortex_m::singleton!(: [u8; FACE_BYTES] = [0; FACE_BYTES]).ok_or("face buffer taken")?;
    let door = Door::new(relay, LockoutPolicy::default(), None);
    let mut service = FaceService::new(door, EngineEmbedder { model, arena }, audit, clock, face);
    let detector = door_app::eye::detector().map_err(|_| "no detector compiled in")?;
    if detector.arena_len() > ARENA {
        return Err("the detector needs a larger arena than the door's");
    }
    let scratch = cortex_m::singleton!(: Scratch = Scratch::new()).ok_or("scratch taken")?;
    let frame = cortex_m::singleton!(: FrameBuffer = FrameBuffer([0; FRAME]))
        .ok_or("frame buffer taken")?;
    service = service.with_eye(Eye::new(detector, scratch, &mut frame.0));
    let mut camera = dcmi_camera::DcmiCamera::new(
        p.DCMI,
        p.DMA1_CH0,
        (p.PC6, p.PC7, p.PC8, p.PC9, p.PC11, p.PD3, p.PE5, p.PE6),
        p.PG9,
        p.PA4,
        p.PA6,
        dcmi_camera::Config::QVGA_RGB565,
    );
    let board = BoardInfo {
        firmware: env!("CARGO_PKG_VERSION"),
        model_hash: hash,
        device_id: device_id(),
        claim_key: door_app::CLAIM_KEY,
    };
    let uart = Uart::new_blocking(p.USART3, p.PD9, p.PD8, usart::Config::default())
        .map_err(|_| "USART3 config")?;
    let mut link = NbLink::new(uart);
    defmt::info!("door: ready on USART3");
    server::serve(&mut link, &board, &mut store, &mut service, |store, s| {
        s.poll();
        match s.look(&mut camera, store) {
            Ok(Some(entry)) => defmt::info!("door: {}", entry),
            Ok(None) => {}
            Err(e) => defmt::warn!("door: camera: {}", e),
        }
    })
    .map_err(|_| "the provisioning UART failed")
}
