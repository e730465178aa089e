//! A DCMI + DMA camera for the STM32H743: one snapshot frame per
//! [`Camera::capture`], written by DMA1 stream 0 straight into the door's
//! frame buffer, waited for by polling (this board runs without interrupt
//! vectors, see `Cargo.toml`), behind facegate-core's [`Camera`] trait.
//!
//! **Built, not tested on hardware**: no camera module was at hand. What it
//! assumes, from RM0433: the sensor (an OV7670/OV2640-class module) has
//! been set over its SCCB/I²C port to stream `width × height` RGB565 (or
//! 8-bit grey) with hardware HSYNC/VSYNC on an 8-bit bus; HSYNC and VSYNC
//! are low while data are invalid and data are sampled on PIXCLK's rising
//! edge (change [`Config`] for other sensors); the data cache is off (it
//! is never enabled in this firmware), so what the DMA wrote is what the
//! CPU reads.

use core::sync::atomic::{Ordering, compiler_fence};

use embassy_stm32::Peri;
use embassy_stm32::dcmi::{
    D0Pin, D1Pin, D2Pin, D3Pin, D4Pin, D5Pin, D6Pin, D7Pin, HSyncPin, PixClkPin, VSyncPin,
};
use embassy_stm32::gpio::{AfType, Flex, Pull};
use embassy_stm32::pac;
use embassy_stm32::pac::dma::vals::{Dir, Dmdis, Fth, Pl, Size};
use embassy_stm32::peripherals::{DCMI, DMA1_CH0};
use facegate_core::camera::Camera;
use facegate_core::protocol::{FrameFormat, FrameSpec};

/// DMAMUX1 request line of the DCMI (RM0433, table "DMAMUX1: assignment of
/// multiplexer inputs to resources": 75 = dcmi_dma).
const DMAMUX_DCMI: u8 = 75;
/// The DMA stream (DMA1 stream 0, DMAMUX1 channel 0) the camera owns.
const STREAM: usize = 0;
/// Polls of the status registers before a capture gives up: far more than
/// one frame of a camera running at all (a QVGA frame at 1 fps is about
/// 50 M cycles of a poll loop of a few instructions).
const POLL_LIMIT: u32 = 400_000_000;

/// How the sensor drives the bus.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct Config {
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Pixel layout the sensor streams (RGB565 or grey; 2 or 1 bytes a pixel).
    pub format: FrameFormat,
    /// Data are sampled on PIXCLK's rising edge (else the falling edge).
    pub sample_on_rising_edge: bool,
    /// VSYNC's level while data are invalid is high (else low).
    pub vsync_invalid_high: bool,
    /// HSYNC's level while data are invalid is high (else low).
    pub hsync_invalid_high: bool,
}

impl Config {
    /// QVGA RGB565, the common cheap-module setting.
    pub const QVGA_RGB565: Self = Self {
        width: 320,
        height: 240,
        format: FrameFormat::Rgb565,
        sample_on_rising_edge: true,
        vsync_invalid_high: false,
        hsync_invalid_high: false,
    };

    fn spec(&self) -> FrameSpec {
        FrameSpec {
            width: self.width,
            height: self.height,
            format: self.format,
        }
    }
}

/// Why a capture failed; the buffer holds no frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum CaptureError {
    /// The buffer is smaller than a frame, not word-aligned, or the frame is
    /// longer than one DMA transfer (65,535 words) or not whole words.
    Buffer,
    /// An RGB888 frame: the sensors this drives give RGB565 or grey.
    Format,
    /// The DCMI saw a synchronisation error.
    Sync,
    /// The DCMI's FIFO overflowed (the bus was faster than the DMA).
    Overrun,
    /// The DMA reported a transfer error.
    Dma,
    /// No frame arrived in time (no camera, or it is not streaming).
    Timeout,
}

/// The DCMI with its DMA stream and its 11 pins.
pub struct DcmiCamera<'d> {
    config: Config,
    _dcmi: Peri<'d, DCMI>,
    _dma: Peri<'d, DMA1_CH0>,
    _pins: [Flex<'d>; 11],
}

/// A pin switched to its DCMI alternate function (the pin trait checks at
/// compile time that it is a DCMI pin and gives its AF number).
fn dcmi_pin<'d>(af: u8, pin: Peri<'d, impl embassy_stm32::gpio::Pin>) -> Flex<'d> {
    let mut f = Flex::new(pin);
    f.set_as_af_unchecked(af, AfType::input(Pull::None));
    f
}

impl<'d> DcmiCamera<'d> {
    /// Takes the DCMI, DMA1 stream 0 and the bus pins; the sensor streams
    /// as `config` says.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dcmi: Peri<'d, DCMI>,
        dma: Peri<'d, DMA1_CH0>,
        d: (
            Peri<'d, impl D0Pin<DCMI>>,
            Peri<'d, impl D1Pin<DCMI>>,
            Peri<'d, impl D2Pin<DCMI>>,
            Peri<'d, impl D3Pin<DCMI>>,
            Peri<'d, impl D4Pin<DCMI>>,
            Peri<'d, impl D5Pin<DCMI>>,
            Peri<'d, impl D6Pin<DCMI>>,
            Peri<'d, impl D7Pin<DCMI>>,
        ),
        vsync: Peri<'d, impl VSyncPin<DCMI>>,
        hsync: Peri<'d, impl HSyncPin<DCMI>>,
        pixclk: Peri<'d, impl PixClkPin<DCMI>>,
        config: Config,
    ) -> Self {
        let pins = [
            dcmi_pin(d.0.af_num(), d.0),
            dcmi_pin(d.1.af_num(), d.1),
            dcmi_pin(d.2.af_num(), d.2),
            dcmi_pin(d.3.af_num(), d.3),
            dcmi_pin(d.4.af_num(), d.4),
            dcmi_pin(d.5.af_num(), d.5),
            dcmi_pin(d.6.af_num(), d.6),
            dcmi_pin(d.7.af_num(), d.7),
            dcmi_pin(vsync.af_num(), vsync),
            dcmi_pin(hsync.af_num(), hsync),
            dcmi_pin(pixclk.af_num(), pixclk),
        ];
        pac::RCC.ahb2enr().modify(|w| w.set_dcmien(true));
        pac::RCC.ahb1enr().modify(|w| w.set_dma1en(true));
        pac::DCMI.cr().write(|w| {
            w.set_cm(true); // snapshot: one frame per capture
            w.set_ess(false); // hardware HSYNC/VSYNC
            w.set_pckpol(config.sample_on_rising_edge);
            w.set_vspol(config.vsync_invalid_high);
            w.set_hspol(config.hsync_invalid_high);
            w.set_fcrc(0); // every frame
            w.set_edm(0); // 8-bit bus
        });
        // No DCMI interrupt is ever enabled: capture polls.
        pac::DCMI.ier().write(|_| {});
        pac::DCMI.cr().modify(|w| w.set_enable(true));
        Self {
            config,
            _dcmi: dcmi,
            _dma: dma,
            _pins: pins,
        }
    }

    /// Stops the stream and waits until the DMA has let go of the buffer.
    fn stop() {
        pac::DCMI.cr().modify(|w| w.set_capture(false));
        let st = pac::DMA1.st(STREAM);
        st.cr().modify(|w| w.set_en(false));
        while st.cr().read().en() {}
        compiler_fence(Ordering::SeqCst);
    }
}

impl Camera for DcmiCamera<'_> {
    type Error = CaptureError;

    fn capture(&mut self, buf: &mut [u8]) -> Result<FrameSpec, CaptureError> {
        let spec = self.config.spec();
        if spec.format == FrameFormat::Rgb888 {
            return Err(CaptureError::Format);
        }
        let bytes = spec.bytes();
        let words = u16::try_from(bytes / 4).map_err(|_| CaptureError::Buffer)?;
        let dst = buf.get_mut(..bytes).ok_or(CaptureError::Buffer)?;
        // Word transfers: the buffer must start on a word and hold whole words.
        if bytes % 4 != 0 || (dst.as_ptr() as usize) % 4 != 0 {
            return Err(CaptureError::Buffer);
        }
        Self::stop();
        let dma = pac::DMA1;
        let st = dma.st(STREAM);
        dma.ifcr(STREAM / 4).write(|w| {
            w.set_tcif(STREAM % 4, true);
            w.set_teif(STREAM % 4, true);
            w.set_dmeif(STREAM % 4, true);
            w.set_feif(STREAM % 4, true);
            w.set_htif(STREAM % 4, true);
        });
        pac::DMAMUX1
            .ccr(STREAM)
            .write(|w| w.set_dmareq_id(DMAMUX_DCMI));
        // The DMA writes `dst` (borrowed mutably until `stop` or the end of
        // the transfer below) from the DCMI's data register.
        st.par().write_value(pac::DCMI.dr().as_ptr() as u32);
        st.m0ar().write_value(dst.as_mut_ptr() as u32);
        st.ndtr().write(|w| w.set_ndt(words));
        st.fcr().write(|w| {
            w.set_dmdis(Dmdis::DISABLED); // through the FIFO
            w.set_fth(Fth::FULL);
        });
        compiler_fence(Ordering::SeqCst);
        st.cr().write(|w| {
            w.set_dir(Dir::PERIPHERAL_TO_MEMORY);
            w.set_psize(Size::BITS32);
            w.set_msize(Size::BITS32);
            w.set_minc(true);
            w.set_pl(Pl::HIGH);
            w.set_en(true);
        });
        pac::DCMI.icr().write(|w| {
            w.set_frame_isc(true);
            w.set_ovr_isc(true);
            w.set_err_isc(true);
        });
        pac::DCMI.cr().modify(|w| w.set_capture(true));
        let mut polls = 0u32;
        let result = loop {
            let ris = pac::DCMI.ris().read();
            let isr = dma.isr(STREAM / 4).read();
            if ris.err_ris() {
                break Err(CaptureError::Sync);
            }
            if ris.ovr_ris() {
                break Err(CaptureError::Overrun);
            }
            if isr.teif(STREAM % 4) || isr.dmeif(STREAM % 4) {
                break Err(CaptureError::Dma);
            }
            if ris.frame_ris() && isr.tcif(STREAM % 4) {
                break Ok(spec);
            }
            polls += 1;
            if polls >= POLL_LIMIT {
                break Err(CaptureError::Timeout);
            }
        };
        Self::stop();
        result
    }
}
