//! `facegate claim-token`: an installer lets one site claim one board.
//!
//! A board built with an installer's public key (`FACEGATE_CLAIM_KEY` for
//! the firmware, `facegate-edge serve --claim-key`) only accepts a claim
//! that carries the installer's signature over its device id and the
//! site's public key. The installer makes that token here, from the board's
//! id (`facegate board info`) and the customer's `site.key.pub`; the
//! customer passes it to `facegate provision --claim-token`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ed25519_dalek::VerifyingKey;
use facegate_core::protocol::{DEVICE_ID_LEN, key_from_hex};

use super::board::{hex, load_site_key};

/// `facegate claim-token …`
#[derive(Debug, Args)]
pub struct ClaimTokenArgs {
    /// Installer private key (`facegate keygen --out installer.key`).
    #[arg(long, default_value = "installer.key")]
    installer_key: PathBuf,
    /// The board's device id, as `facegate board info` prints it (text).
    #[arg(long)]
    device_id: String,
    /// The site's public key file (`site.key.pub`).
    #[arg(long, default_value = "site.key.pub")]
    site_pub: PathBuf,
}

/// A token given as 128 hex digits.
pub fn parse_token(text: &str) -> Result<[u8; 64]> {
    let t = text.trim();
    match (
        key_from_hex(t.get(..64).unwrap_or("")),
        key_from_hex(t.get(64..).unwrap_or("")),
    ) {
        (Some(a), Some(b)) => {
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(&a);
            out[32..].copy_from_slice(&b);
            Ok(out)
        }
        _ => bail!("a claim token is 128 hex digits (as `facegate claim-token` prints it)"),
    }
}

/// A device id as `facegate board info` prints it: text (zero-padded to
/// 16 bytes), or `hex:` and 32 hex digits.
pub fn device_id(text: &str) -> Result<[u8; DEVICE_ID_LEN]> {
    let mut id = [0u8; DEVICE_ID_LEN];
    if let Some(h) = text.strip_prefix("hex:") {
        let bytes: Option<Vec<u8>> = (0..h.len())
            .step_by(2)
            .map(|i| h.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
            .collect();
        match bytes {
            Some(b) if b.len() == DEVICE_ID_LEN => id.copy_from_slice(&b),
            _ => bail!("hex:… device ids are {} hex digits", 2 * DEVICE_ID_LEN),
        }
        return Ok(id);
    }
    if text.is_empty() || text.len() > DEVICE_ID_LEN {
        bail!(
            "a device id is 1 to {DEVICE_ID_LEN} bytes of text (or hex:…), as `facegate board info` prints it"
        );
    }
    id[..text.len()].copy_from_slice(text.as_bytes());
    Ok(id)
}

/// Runs `facegate claim-token`.
pub fn run(a: ClaimTokenArgs) -> Result<ExitCode> {
    let installer = load_site_key(&a.installer_key)?;
    let text = std::fs::read_to_string(&a.site_pub)
        .with_context(|| format!("cannot read the site's public key {}", a.site_pub.display()))?;
    let site = key_from_hex(text.trim())
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .with_context(|| {
            format!(
                "{} is not a public key (64 hex digits)",
                a.site_pub.display()
            )
        })?;
    let token = facegate_link::claim_token(&installer, &device_id(&a.device_id)?, &site);
    println!("{}", hex(&token));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::board::device_id_text;

    #[test]
    fn device_ids_round_trip_through_their_printed_form() {
        for id in [
            *b"edge-test-board\0",
            *b"0123456789abcdef",
            [0xA5; 16],
            [0; 16],
        ] {
            assert_eq!(device_id(&device_id_text(&id)).unwrap(), id);
        }
        assert_eq!(device_id_text(b"edge-test-board\0"), "edge-test-board");
        assert!(device_id("hex:00").is_err());
        assert!(device_id("").is_err());
        assert!(parse_token(&"ab".repeat(64)).is_ok());
        assert!(parse_token(&"ab".repeat(63)).is_err());
    }
}
