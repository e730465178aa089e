//! `facegate keygen`: the site's Ed25519 key pair for signing provisioning commands.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ed25519_dalek::SigningKey;

/// `facegate keygen …`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to create (hex seed, mode 0600); the public key goes to `FILE.pub`.
    #[arg(long, short, default_value = "site.key")]
    out: PathBuf,
    /// Replace an existing key (boards claimed with the old key will refuse the new one).
    #[arg(long)]
    force: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `facegate keygen`.
pub fn run(a: KeygenArgs) -> Result<ExitCode> {
    if a.out.exists() && !a.force {
        bail!(
            "{} exists; boards claimed with it only accept commands it signs. Use --force to replace it.",
            a.out.display()
        );
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key().to_bytes();

    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    #[cfg(unix)]
    {
        // `mode` only applies to new files; tighten a replaced one too.
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{}", hex(&seed))?;
    let pub_path = PathBuf::from(format!("{}.pub", a.out.display()));
    std::fs::write(&pub_path, format!("{}\n", hex(&public)))
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    println!("site key: {} (private, 0600)", a.out.display());
    println!("public:   {} = {}", pub_path.display(), hex(&public));
    Ok(ExitCode::SUCCESS)
}
