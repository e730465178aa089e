//! The Linux-board runtime for `aarch64-unknown-linux-gnu`: cross-build,
//! its parity test under `qemu-aarch64` user emulation, and packaging.
//!
//! Where rustup has the target (a user's machine) it is used; otherwise
//! Debian's `rustc-web` builds `std` from `rust-web-src` (`-Zbuild-std`) and
//! `gcc-aarch64-linux-gnu` links, as DESIGN.md describes for these machines.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::qemu::which as which_program;
use crate::{cargo, run, target_dir};

/// The Cortex-A target.
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library/std";
const LINKER: &str = "aarch64-linux-gnu-gcc";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// `cargo` set up for aarch64: toolchain, linker, qemu runner, own target dir.
fn cargo_aarch64(root: &Path) -> Result<(Command, Vec<&'static str>)> {
    if which_program(LINKER).is_none() {
        bail!("{LINKER} is not installed: run scripts/setup.sh");
    }
    let rustup_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == AARCH64)
        });
    let mut cmd = cargo(root);
    let mut extra = vec!["--target", AARCH64];
    if !rustup_target {
        if !Path::new(DEBIAN_RUSTC).exists() || !Path::new(DEBIAN_STD_SRC).exists() {
            bail!(
                "no way to build for {AARCH64}: `rustup target add {AARCH64}`, or run scripts/setup.sh (Debian rustc-web + rust-web-src)"
            );
        }
        cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1");
        extra.push("-Zbuild-std=std,panic_abort");
    }
    cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            format!("qemu-aarch64 -L {SYSROOT}"),
        )
        // Another rustc than the host's: keep its outputs apart.
        .env("CARGO_TARGET_DIR", target_dir(root).join("aarch64"));
    Ok((cmd, extra))
}

/// Embeds the parity faces on this x86 host, then runs the parity test on
/// aarch64 under qemu-aarch64 against those embeddings.
pub fn test(root: &Path) -> Result<()> {
    if which_program("qemu-aarch64").is_none() {
        bail!("qemu-aarch64 is not installed: run scripts/setup.sh");
    }
    let host = target_dir(root).join("edge-host-embeddings.txt");
    run(cargo(root)
        .args([
            "test",
            "--locked",
            "-p",
            "facegate-edge",
            "--test",
            "parity",
        ])
        .env("FACEGATE_EDGE_WRITE", &host))?;
    let (mut cmd, extra) = cargo_aarch64(root)?;
    cmd.args([
        "test",
        "--locked",
        "-p",
        "facegate-edge",
        "--test",
        "parity",
    ])
    .args(&extra)
    .args(["--", "--nocapture"])
    .env("FACEGATE_EDGE_EXPECTED", &host);
    run(&mut cmd)
}

/// Builds a deployable folder for a board: binary, model, config, systemd unit.
pub fn package(root: &Path, out: &Path, host: bool) -> Result<PathBuf> {
    let binary = if host {
        run(cargo(root).args(["build", "--release", "--locked", "-p", "facegate-edge"]))?;
        target_dir(root).join("release/facegate-edge")
    } else {
        let (mut cmd, extra) = cargo_aarch64(root)?;
        cmd.args(["build", "--release", "--locked", "-p", "facegate-edge"])
            .args(&extra);
        run(&mut cmd)?;
        target_dir(root)
            .join("aarch64")
            .join(AARCH64)
            .join("release/facegate-edge")
    };
    let _ = std::fs::remove_dir_all(out);
    for dir in ["bin", "models/mtcnn"] {
        std::fs::create_dir_all(out.join(dir))?;
    }
    let copy = |from: &Path, to: &str| {
        std::fs::copy(from, out.join(to))
            .with_context(|| format!("copying {}", from.display()))
            .map(drop)
    };
    copy(&binary, "bin/facegate-edge")?;
    for m in [
        "nano.onnx",
        "nano.fgm",
        "nano.deployment.toml",
        "MODEL_CARD.md",
    ] {
        copy(&root.join("models").join(m), &format!("models/{m}"))?;
    }
    // The camera's face detector (the weights scripts/setup.sh fetched).
    for m in ["pnet.onnx", "rnet.onnx", "onet.onnx", "LICENSE"] {
        copy(
            &root.join("models/third_party/mtcnn").join(m),
            &format!("models/mtcnn/{m}"),
        )?;
    }
    std::fs::write(
        out.join("facegate-edge.env"),
        "# facegate-edge settings (read by facegate-edge.service)\n\
         FACEGATE_PORT=tcp:0.0.0.0:4555\n\
         FACEGATE_STATE=/var/lib/facegate\n\
         FACEGATE_FACES=/run/facegate/faces\n\
         # The camera: facegate-camera.service writes its MJPEG frames into this FIFO.\n\
         FACEGATE_CAMERA=/run/facegate/camera.mjpeg\n\
         FACEGATE_VIDEO=/dev/video0\n\
         # The lock relay: build with --features gpio and add to ExecStart:\n\
         #   --gpio-chip /dev/gpiochip0 --gpio-line 17\n",
    )?;
    std::fs::write(
        out.join("facegate-edge.service"),
        "[Unit]\n\
         Description=facegate door (face verification, lock relay, provisioning link)\n\
         After=network.target\n\n\
         [Service]\n\
         EnvironmentFile=/opt/facegate/facegate-edge.env\n\
         ExecStartPre=/bin/mkdir -p ${FACEGATE_STATE} ${FACEGATE_FACES}\n\
         ExecStartPre=/bin/sh -c 'test -p ${FACEGATE_CAMERA} || mkfifo ${FACEGATE_CAMERA}'\n\
         ExecStart=/opt/facegate/bin/facegate-edge serve --model /opt/facegate/models/nano.onnx --blob /opt/facegate/models/nano.fgm --state ${FACEGATE_STATE} --port ${FACEGATE_PORT} --faces ${FACEGATE_FACES} --camera mjpeg:${FACEGATE_CAMERA} --detector /opt/facegate/models/mtcnn\n\
         Restart=always\n\
         RestartSec=2\n\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
    )?;
    std::fs::write(
        out.join("facegate-camera.service"),
        "[Unit]\n\
         Description=facegate camera: MJPEG frames from V4L2 into the door's FIFO\n\
         After=facegate-edge.service\n\
         Requires=facegate-edge.service\n\n\
         [Service]\n\
         EnvironmentFile=/opt/facegate/facegate-edge.env\n\
         ExecStart=/usr/bin/ffmpeg -loglevel error -f v4l2 -input_format mjpeg -framerate 10 -i ${FACEGATE_VIDEO} -c copy -f mjpeg -y ${FACEGATE_CAMERA}\n\
         Restart=always\n\
         RestartSec=2\n\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
    )?;
    std::fs::write(
        out.join("INSTALL.txt"),
        "Copy this folder to /opt/facegate on the board, then:\n\
         \n  sudo cp /opt/facegate/facegate-edge.service /opt/facegate/facegate-camera.service /etc/systemd/system/\n\
         \x20 sudo systemctl enable --now facegate-edge facegate-camera\n\
         \n(facegate-camera needs ffmpeg and a camera that gives MJPEG; the door runs without it.)\n\
         \nProvision it from the installer's machine:\n\
         \n  facegate provision --port tcp:BOARD:4555 --key site.key --db site.fgdb --deployment models/nano.deployment.toml\n",
    )?;
    println!(
        "edge package for {}: {}",
        if host { "this host" } else { AARCH64 },
        out.display()
    );
    Ok(out.to_path_buf())
}

/// The Linux door deciding from a camera stream: `facegate-edge serve`
/// (this host's build) with its camera on a FIFO, provisioned with the host
/// demo's site database over its TCP link; xtask then plays the camera,
/// writing MJPEG frames at 10 a second: the enrolled person's raw photo for
/// a second, nobody, a stranger's photo, nobody. Each person in view is one
/// decision; the audit log shows them.
pub fn demo(root: &Path, db: &Path, owner: &Path, stranger: &Path) -> Result<()> {
    use std::io::Write as _;
    use std::time::{Duration, Instant};
    let state = target_dir(root).join("demo-edge");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let fifo = state.join("camera.mjpeg");
    run(Command::new("mkfifo").arg(&fifo))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = state.join("edge.log");
    println!(
        "\nedge demo: the Linux door (facegate-edge) with its camera on {}",
        fifo.display()
    );
    let mut edge = {
        use std::os::unix::process::CommandExt as _;
        let mut c = cargo(root);
        c.args([
            "run",
            "--quiet",
            "--locked",
            "-p",
            "facegate-edge",
            "--",
            "serve",
        ])
        .arg("--model")
        .arg(root.join("models/nano.onnx"))
        .arg("--blob")
        .arg(root.join("models/nano.fgm"))
        .arg("--state")
        .arg(state.join("door"))
        .args(["--port", &format!("tcp:127.0.0.1:{port}")])
        .arg("--camera")
        .arg(format!("mjpeg:{}", fifo.display()))
        .arg("--detector")
        .arg(root.join("models/third_party/mtcnn"))
        .args(["--device-id", "edge-demo"])
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(state.join("edge.err"))?)
        .process_group(0)
        .spawn()?
    };
    let result = (|| -> Result<()> {
        crate::qemu::wait_for_line(&log, "edge: ready", Duration::from_secs(600))?;
        let port = format!("tcp:127.0.0.1:{port}");
        let key = state.join("site.key");
        crate::provision_demo_site(root, &port, &key, db)?;
        // A grey frame: nobody in view.
        let mut nobody = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(250, 250, image::Rgb([128, 128, 128]))
            .write_to(&mut nobody, image::ImageFormat::Jpeg)?;
        let nobody = nobody.into_inner();
        let (a, b) = (std::fs::read(owner)?, std::fs::read(stranger)?);
        println!(
            "edge demo: the camera sees {} (1 s), nobody (2.5 s), {} (1 s), nobody (2.5 s)",
            owner.display(),
            stranger.display()
        );
        let mut camera = std::fs::OpenOptions::new().write(true).open(&fifo)?;
        for (frame, n) in [(&a, 10), (&nobody, 25), (&b, 10), (&nobody, 25)] {
            for _ in 0..n {
                camera.write_all(frame)?;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        drop(camera);
        // The door reports its camera figures when the stream ends.
        let started = Instant::now();
        while !std::fs::read_to_string(&log)?.contains("frames read") {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for line in std::fs::read_to_string(&log)?
            .lines()
            .filter(|l| l.contains("camera"))
        {
            println!("  [edge] {line}");
        }
        crate::board_audit(root, &port, &key)?;
        println!("edge demo: the door's whole log is in {}", log.display());
        Ok(())
    })();
    crate::qemu::stop(&mut edge);
    result
}
