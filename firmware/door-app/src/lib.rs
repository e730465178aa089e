//! The facegate door application, independent of any board.
//!
//! Boards (see `../boards/`) provide the runtime, the log transport and the
//! exit path; everything they run lives here so it can grow into the full
//! verify / store / provision app without touching board code.
#![no_std]

pub mod clock;
pub mod demo;
pub mod door_check;
pub mod engine_check;
pub mod nb_link;
pub mod server;
