//! One end-to-end door test, two targets: the door image on QEMU's
//! Cortex-M7 board (over its UART) and the Linux edge runtime (tract, file
//! flash, over TCP). Each is driven exactly as an installer drives a real
//! door: `facegate keygen`, `enroll` from raw photos (detected, aligned,
//! gated), `provision`, `board …` and `verify --port`, plus the protocol's
//! refusals straight through `facegate-link`. Then the board is restarted
//! and everything provisioned must still be there.
//!
//! The QEMU target needs the door firmware ELF (`FACEGATE_DOOR_ELF`), QEMU
//! and defmt-print: `cargo xtask test` builds it and runs it; a plain
//! `cargo test` skips it (ignored). The edge target runs in-process.

use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use facegate_core::protocol::{Command as BoardCommand, DecisionKind, ErrorCode, Request};
use facegate_core::{EMBEDDING_DIM, Embedding, Template};
use facegate_detect::{Choice, FaceFinder, QualityGates};
use facegate_e2e::shared_data;
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::Face;
use facegate_link::{Board, LinkError, Reply, encode, encode_templates, signed_frame};
use facegate_quant::engine::EngineEmbedder;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The emulated board, its UART on a local TCP port, its log in a file.
struct Qemu {
    child: Child,
    port: String,
    log: PathBuf,
}

impl Qemu {
    /// Boots `elf` with QEMU's working directory (where the flash files live) in `dir`.
    fn boot(elf: &Path, dir: &Path, boot: u32) -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = dir.join(format!("qemu-{boot}.log"));
        let child = Command::new("bash")
            .arg(repo().join("firmware/scripts/qemu-run.sh"))
            .arg(elf)
            .env(
                "QEMU_SERIAL",
                format!("tcp:127.0.0.1:{port},server=on,wait=off"),
            )
            // A safety net only: the test stops QEMU itself.
            .env("QEMU_TIMEOUT", "600")
            .current_dir(dir)
            .stdout(File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            // Its own process group, so QEMU and defmt-print stop with it.
            .process_group(0)
            .spawn()
            .expect("start firmware/scripts/qemu-run.sh");
        let q = Self {
            child,
            port: format!("tcp:127.0.0.1:{port}"),
            log,
        };
        // QEMU listens on the port before the guest runs; the log line says the board is up.
        q.wait_for("door: ready on UART0", 1, Duration::from_secs(60));
        q
    }

    fn log(&self) -> String {
        let mut s = String::new();
        File::open(&self.log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn wait_for(&self, needle: &str, count: usize, timeout: Duration) {
        let started = Instant::now();
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "`{needle}` ×{count} never appeared; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A board under test.
trait Target {
    /// Its `--port`.
    fn port(&self) -> String;
    /// How far its scores may be from the host engine's (0 for the same engine).
    fn score_tolerance(&self) -> f32;
    /// Checks that the relay pulsed `pulses` times and closed after each, where observable.
    fn check_relay(&self, pulses: usize);
}

impl Target for Qemu {
    fn port(&self) -> String {
        self.port.clone()
    }
    fn score_tolerance(&self) -> f32 {
        1e-6 // the board runs the host's int8 engine, bit for bit
    }
    fn check_relay(&self, pulses: usize) {
        // Door::new drives the relay low once at boot, then once per pulse.
        self.wait_for(
            "door: lock relay LOW (locked), FPGAIO LED0 = 0",
            pulses + 1,
            Duration::from_secs(20),
        );
        assert_eq!(
            self.log()
                .matches("door: lock relay HIGH (open), FPGAIO LED0 = 1")
                .count(),
            pulses
        );
    }
}

/// The edge runtime in a thread of this process, on a local TCP port.
struct Edge {
    port: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Edge {
    fn boot(state: &Path) -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = facegate_edge::door_app::ServeConfig {
            model: repo().join("models/nano.onnx"),
            blob: repo().join("models/nano.fgm"),
            state: state.join("edge-state"),
            port: format!("tcp:127.0.0.1:{port}"),
            faces: None,
            camera: None,
            device_id: Some("edge-test-board".into()),
            gpio: None,
            claim_key: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || facegate_edge::door_app::serve(&config, &flag));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                !thread.is_finished(),
                "the edge runtime stopped at start-up"
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "edge never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port: format!("tcp:127.0.0.1:{port}"),
            stop,
            thread: Some(thread),
        }
    }
}

impl Target for Edge {
    fn port(&self) -> String {
        self.port.clone()
    }
    fn score_tolerance(&self) -> f32 {
        0.04 // tract runs the float model the int8 templates were quantized from
    }
    fn check_relay(&self, _: usize) {
        // Logged to this process's stdout; the audit log is checked instead.
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let pgid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

fn facegate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = facegate(dir, args);
    assert!(o.status.success(), "facegate {args:?}:\n{}", text(&o));
    text(&o)
}

/// `facegate enroll` of person `id` from `photos` into `dir/site.fgdb`,
/// keeping every photo, with `how` (`--aligned`, or which face to take).
fn enroll_photos(dir: &Path, id: u32, who: &str, how: &[&str], photos: &[PathBuf]) -> String {
    let model = repo().join("models/nano.fgm");
    let id = id.to_string();
    let photos: Vec<String> = photos.iter().map(|f| f.display().to_string()).collect();
    let mut args = vec![
        "enroll",
        "--db",
        "site.fgdb",
        "--model",
        model.to_str().unwrap(),
        "--min-agreement",
        "-1",
        "--id",
        &id,
        "--name",
        who,
    ];
    args.extend(how);
    args.extend(photos.iter().map(String::as_str));
    ok(dir, &args)
}

/// `facegate enroll` of `who` from aligned LFW photos 1–3.
fn enroll(dir: &Path, data: &Path, id: u32, who: &str) {
    let photos: Vec<PathBuf> = (1..=3).map(|n| photo(data, who, n)).collect();
    enroll_photos(dir, id, who, &["--aligned"], &photos);
}

/// `facegate enroll` of `p` from its raw photos (detection picks the
/// central face, as LFW's labels mean).
fn enroll_raw(dir: &Path, p: &Person) {
    let out = enroll_photos(dir, p.id, &p.who, &["--face", "central"], &p.enroll);
    assert!(out.contains("with 3 template(s)"), "{out}");
}

/// `facegate provision` of `dir/site.fgdb` to `port` with `key` and `extra` flags.
fn provision(dir: &Path, port: &str, key: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "provision",
        "--port",
        port,
        "--key",
        key,
        "--db",
        "site.fgdb",
    ];
    args.extend(extra);
    facegate(dir, &args)
}

/// [`provision`] that must succeed; its output.
fn provisioned(dir: &Path, port: &str, extra: &[&str]) -> String {
    let o = provision(dir, port, "site.key", extra);
    assert!(
        o.status.success(),
        "facegate provision {extra:?}:\n{}",
        text(&o)
    );
    text(&o)
}

fn photo(data: &Path, who: &str, n: u32) -> PathBuf {
    data.join(format!("lfw/aligned_112/{who}/{who}_{n:04}.jpg"))
}

fn embed(engine: &EngineEmbedder, rgb: &[u8]) -> Template {
    let raw = engine.embed(&Face { rgb: rgb.to_vec() }).unwrap();
    Template::quantize(&Embedding::<EMBEDDING_DIM>::from_slice(&raw).unwrap())
}

/// A person enrolled from three raw photos and another raw photo of them
/// the host engine scores clearly above the threshold (and above everyone
/// else enrolled).
struct Person {
    id: u32,
    who: String,
    enroll: Vec<PathBuf>,
    templates: Vec<Template>,
    probe: PathBuf,
    /// The probe as the CLI aligns it (what `board verify` sends).
    probe_face: Vec<u8>,
    score: f32,
}

/// A raw photo of someone not enrolled, scored clearly below the threshold.
struct Stranger {
    photo: PathBuf,
    face: Vec<u8>,
}

const PEOPLE: usize = 5;

/// How far from the threshold a chosen face's score must be, so that the
/// board's embedding path (the engine, or tract on the edge) cannot flip the
/// decision (over LFW they agree per face to a cosine of 0.996 or better): 0.06, or a
/// third of the way to 1 for a model whose threshold sits close to 1 (the
/// distilled `nano` accepts at about 0.91).
fn clear_margin(threshold: f32) -> f32 {
    0.06f32.min((1.0 - threshold) / 3.0)
}

/// Picks the test's faces from `lfw/raw_subset` with the host detector and
/// engine (the CLI and the board must then agree): in alphabetical order,
/// the first five people whose first three gated photos enroll them and
/// who have a clearly accepted later photo, then five other people whose
/// first photo is clearly rejected against all of them.
fn raw_cases(data: &Path, engine: &EngineEmbedder, threshold: f32) -> (Vec<Person>, Vec<Stranger>) {
    let finder = FaceFinder::load(
        &repo().join(facegate_detect::DEFAULT_WEIGHTS),
        Default::default(),
    )
    .unwrap();
    let gates = QualityGates::default();
    let sorted = |dir: &Path| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let detect = |p: &Path| finder.find_in_file(p, Choice::Central).ok();
    let margin = clear_margin(threshold);
    let folders = sorted(&data.join("lfw/raw_subset"));
    let mut people: Vec<Person> = Vec::new();
    let mut others = Vec::new();
    for folder in &folders {
        if people.len() == PEOPLE {
            others.push(folder);
            continue;
        }
        let photos = sorted(folder);
        let (mut enroll, mut templates) = (Vec::new(), Vec::new());
        let mut rest = photos.iter();
        for p in rest.by_ref() {
            if let Some(f) = detect(p).filter(|f| gates.check(&f.quality).is_ok()) {
                enroll.push(p.clone());
                templates.push(embed(engine, &f.aligned[..]));
                if enroll.len() == 3 {
                    break;
                }
            }
        }
        let best =
            |t: &Template, of: &[Template]| of.iter().map(|e| e.cosine(t)).fold(f32::MIN, f32::max);
        let probe = rest
            .filter_map(|p| detect(p).map(|f| (p, f)))
            .find_map(|(p, f)| {
                let t = embed(engine, &f.aligned[..]);
                let score = best(&t, &templates);
                let rival = people
                    .iter()
                    .map(|o| best(&t, &o.templates))
                    .fold(f32::MIN, f32::max);
                (score > threshold + margin && score > rival + margin)
                    .then(|| (p.clone(), f.aligned.to_vec(), score))
            });
        if let (3, Some((probe, probe_face, score))) = (enroll.len(), probe) {
            let who = folder.file_name().unwrap().to_str().unwrap().to_string();
            people.push(Person {
                id: u32::try_from(people.len()).unwrap() + 1,
                who,
                enroll,
                templates,
                probe,
                probe_face,
                score,
            });
        }
    }
    assert_eq!(
        people.len(),
        PEOPLE,
        "fewer than {PEOPLE} raw_subset people with a clearly accepted probe"
    );
    let gallery: Vec<&Template> = people.iter().flat_map(|p| &p.templates).collect();
    let strangers: Vec<Stranger> = others
        .iter()
        .filter_map(|folder| {
            let photo = sorted(folder).into_iter().next()?;
            let f = detect(&photo)?;
            let t = embed(engine, &f.aligned[..]);
            gallery
                .iter()
                .all(|e| e.cosine(&t) < threshold - margin)
                .then(|| Stranger {
                    photo,
                    face: f.aligned.to_vec(),
                })
        })
        .take(PEOPLE)
        .collect();
    assert_eq!(
        strangers.len(),
        PEOPLE,
        "five strangers clearly below the threshold"
    );
    (people, strangers)
}

fn door_elf() -> PathBuf {
    let elf = std::env::var_os("FACEGATE_DOOR_ELF")
        .map(PathBuf::from)
        .expect("FACEGATE_DOOR_ELF names the door firmware ELF (cargo xtask test sets it)");
    assert!(elf.is_file(), "no door firmware at {}", elf.display());
    elf
}

#[test]
#[ignore = "needs the door firmware in QEMU: `cargo xtask test` builds it and runs this"]
fn qemu_door_provisioned_by_the_cli_over_the_uart() {
    let elf = door_elf();
    door_flow(&mut |dir, n| Box::new(Qemu::boot(&elf, dir, n)), 16);
}

#[test]
fn edge_door_provisioned_by_the_cli_over_tcp() {
    door_flow(&mut |dir, _| Box::new(Edge::boot(dir)), 64);
}

/// Enroll, provision, refuse, verify, restart, verify again — on `boot`'s board.
fn door_flow(boot: &mut dyn FnMut(&Path, u32) -> Box<dyn Target>, capacity: u16) {
    let Some(data) = shared_data() else {
        panic!("the door test needs ../shared/data");
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = repo().join("models/nano.fgm");
    let deployment = repo().join("models/nano.deployment.toml");
    let deployment_s = deployment.to_str().unwrap();
    let engine = EngineEmbedder::load(&model).unwrap();
    let advice = facegate_eval::deploy::DeploymentAdvice::from_toml(
        &std::fs::read_to_string(&deployment).unwrap(),
    )
    .unwrap();
    let threshold = advice.threshold as f32;
    let (people, strangers) = raw_cases(&data, &engine, threshold);

    ok(d, &["keygen", "--out", "site.key"]);
    ok(d, &["keygen", "--out", "other.key"]);
    for p in &people {
        enroll_raw(d, p);
    }
    // The CLI stored exactly the templates the host pipeline computes.
    let bytes = std::fs::read(d.join("site.fgdb")).unwrap();
    let db = facegate_core::db::DbReader::<EMBEDDING_DIM>::open(&bytes).unwrap();
    for r in db.records() {
        let r = r.unwrap();
        let p = people.iter().find(|p| p.id == r.id().0).unwrap();
        let stored: Vec<Template> = r.templates().collect();
        assert_eq!(stored.len(), 3, "{}", p.who);
        assert!(p.templates.iter().all(|t| stored.contains(t)), "{}", p.who);
    }

    let board1 = boot(d, 1);
    let port = board1.port();
    let info = ok(d, &["board", "info", "--port", &port]);
    assert!(info.contains("claimed    no"), "{info}");
    assert!(
        info.contains("threshold  1.0000 (factory: opens for no one"),
        "{info}"
    );
    assert!(
        info.contains(&format!("people     0 of {capacity}")),
        "{info}"
    );

    // Another model's deployment file: refused before the board is touched
    // (the first real provisioning below still finds it unclaimed).
    let mfn_deployment = repo().join("models/mfn.deployment.toml");
    let wrong = provision(
        d,
        &port,
        "site.key",
        &["--deployment", mfn_deployment.to_str().unwrap()],
    );
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("mfn.deployment.toml is for model"),
        "{}",
        text(&wrong)
    );

    // Provision: claim, enroll both, threshold from the deployment file, read back.
    let provision =
        |port: &str, key: &str| provision(d, port, key, &["--deployment", deployment_s]);
    let first = text(&provision(&port, "site.key"));
    assert!(first.contains("claimed the board"), "{first}");
    assert!(
        first.contains("provisioned: 5 enrolled or updated, 0 removed"),
        "{first}"
    );
    assert!(
        first.contains(&format!("people     5 of {capacity}")),
        "{first}"
    );
    assert!(
        first.contains(&format!("threshold  {threshold:.4}")),
        "{first}"
    );
    // Again: nothing to do, nothing sent.
    let again = text(&provision(&port, "site.key"));
    assert!(again.contains("already in sync"), "{again}");
    // What the threshold means at this site's size (5 people × 3 templates):
    // 15 × FAR 1e-3 is over 1 %, so the CLI says so and how to fix it.
    // (15 × the deployment file's 1:1 FAR at its threshold, about 1.5 %.)
    let bound = advice.open_set_far(advice.threshold, 15).unwrap();
    assert!(bound > 0.01, "{bound}");
    assert!(
        first.contains(&format!(
            "one of the site's 15 templates with probability at most {:.2} %",
            100.0 * bound
        )),
        "{first}"
    );
    assert!(first.contains("--open-set-far 0.01"), "{first}");
    // It picks the curve's threshold for 15 templates, and the board holds it;
    // the one-to-one threshold goes back after.
    let strict = advice
        .threshold_for_open_set_far(0.01, 15)
        .unwrap()
        .threshold as f32;
    assert!(strict > threshold);
    let tight = provisioned(
        d,
        &port,
        &["--deployment", deployment_s, "--open-set-far", "0.01"],
    );
    assert!(
        tight.contains(&format!("threshold  {strict:.4}")),
        "{tight}"
    );
    assert!(!tight.contains("warning"), "{tight}");
    let back = provisioned(d, &port, &["--deployment", deployment_s]);
    assert!(
        back.contains(&format!("threshold  {threshold:.4}")),
        "{back}"
    );
    // Another site's key: refused before anything is signed.
    let other = provision(&port, "other.key");
    assert!(!other.status.success());
    assert!(
        text(&other).contains("another site key"),
        "{}",
        text(&other)
    );

    // The board itself refuses, whatever the host tool does.
    let mut board = Board::connect(&port).unwrap();
    let before = board.info().unwrap();
    let stranger_key = SigningKey::from_bytes(&[9; 32]);
    assert!(matches!(
        board.claim(&stranger_key.verifying_key(), &[]),
        Err(LinkError::Refused(ErrorCode::AlreadyClaimed))
    ));
    assert!(matches!(
        board.signed(&stranger_key, &BoardCommand::Remove { id: 1 }),
        Err(LinkError::Refused(ErrorCode::BadSignature))
    ));
    let mut garbled = encode(&Request::Info).unwrap();
    garbled[1] ^= 0x40;
    assert_eq!(
        board.send_frame(&garbled).unwrap(),
        Reply::Error(ErrorCode::Garbled)
    );
    // A recorded enroll (someone slipping in a third person) is accepted
    // once, and its replay refused.
    let site_key = facegate_key(&d.join("site.key"));
    let mallory = encode_templates(&[embed(&engine, &strangers[0].face)]);
    let recorded = signed_frame(
        &site_key,
        &before.device_id,
        before.nonce,
        &BoardCommand::Enroll {
            id: 77,
            name: "Mallory",
            templates: &mallory,
        },
    )
    .unwrap();
    assert_eq!(
        board.send_frame(&recorded).unwrap(),
        Reply::Ok {
            nonce: before.nonce + 1
        }
    );
    assert_eq!(
        board.send_frame(&recorded).unwrap(),
        Reply::Error(ErrorCode::BadNonce),
        "a replayed enroll"
    );
    assert_eq!(board.info().unwrap().enrolled, 6);
    drop(board);
    // The site database is the truth: provisioning removes the extra person
    // (and sets a shorter pulse).
    let sync = provisioned(
        d,
        &port,
        &["--deployment", deployment_s, "--unlock-ms", "2000"],
    );
    assert!(
        sync.contains("provisioned: 0 enrolled or updated, 1 removed"),
        "{sync}"
    );
    let after = Board::connect(&port).unwrap().info().unwrap();
    assert_eq!((after.enrolled, after.unlock_ms), (5, 2_000));

    // Faces over the link: only the site key may ask (issue 25 #1); a
    // stranger's key decides nothing and pulses nothing.
    {
        let mut board = Board::connect(&port).unwrap();
        assert!(matches!(
            board.verify_face(&stranger_key, &people[0].probe_face),
            Err(LinkError::Refused(ErrorCode::BadSignature))
        ));
    }
    // The board's decision and score are the host engine's.
    for p in &people {
        let mut board = Board::connect(&port).unwrap();
        let d = board.verify_face(&site_key, &p.probe_face).unwrap();
        assert_eq!(
            (d.kind, d.person),
            (DecisionKind::Unlocked, Some(p.id)),
            "{}",
            p.probe.display()
        );
        let s = d.score.unwrap();
        assert!(
            (s - p.score).abs() <= board1.score_tolerance(),
            "board {s} vs host {}",
            p.score
        );
    }
    // Strangers' raw photos, detected and aligned by the CLI.
    for s in &strangers {
        let photo = s.photo.to_str().unwrap();
        let o = facegate(d, &["verify", "--port", &port, "--face", "central", photo]);
        assert_eq!(o.status.code(), Some(3), "{photo}: {}", text(&o));
        assert!(text(&o).contains("REJECTED"), "{}", text(&o));
    }
    // Five pulses, each closed after the unlock time; strangers opened nothing.
    board1.check_relay(PEOPLE);
    // Only the site key reads the log (who came in when); its holder sees scores.
    let stranger = SigningKey::from_bytes(&[9; 32]);
    assert!(matches!(
        Board::connect(&port).unwrap().audit(&stranger),
        Err(LinkError::Refused(ErrorCode::BadSignature))
    ));
    assert!(matches!(
        Board::connect(&port).unwrap().list(&stranger),
        Err(LinkError::Refused(ErrorCode::BadSignature))
    ));
    let audit = ok(d, &["board", "audit", "--port", &port]);
    assert!(audit.contains("10 events"), "{audit}");
    assert_eq!(audit.matches("UNLOCKED").count(), PEOPLE, "{audit}");
    assert!(audit.contains("score 0."), "{audit}");

    // Every verification spent a nonce (none of them can be replayed), and
    // so did each page of the signed audit read (8 events a page).
    let before_cut = Board::connect(&port).unwrap().info().unwrap();
    let audit_pages = (people.len() + strangers.len()).div_ceil(8);
    assert_eq!(
        before_cut.nonce,
        after.nonce + u32::try_from(people.len() + strangers.len() + audit_pages).unwrap()
    );

    // Power cut: stop the board, boot it again from the same flash files.
    drop(board1);
    let board2 = boot(d, 2);
    let port = board2.port();
    let info = ok(d, &["board", "info", "--port", &port]);
    assert!(info.contains("claimed    yes"), "{info}");
    assert!(
        info.contains(&format!("people     5 of {capacity}")),
        "{info}"
    );
    assert!(
        info.contains(&format!("nonce      {}", before_cut.nonce)),
        "{info}"
    );
    assert!(info.contains("unlock     2000 ms"), "{info}");
    let mut board = Board::connect(&port).unwrap();
    assert_eq!(
        board.send_frame(&recorded).unwrap(),
        Reply::Error(ErrorCode::BadNonce),
        "replay after restart"
    );
    drop(board);
    let again = text(&provision(&port, "site.key"));
    assert!(again.contains("already in sync"), "{again}");
    let o = facegate(
        d,
        &[
            "board",
            "verify",
            "--port",
            &port,
            "--face",
            "central",
            people[0].probe.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("UNLOCKED"), "{}", text(&o));
    let audit = ok(d, &["board", "audit", "--port", &port]);
    assert!(audit.contains("11 events"), "{audit}");
}

fn facegate_key(path: &Path) -> SigningKey {
    let hex = std::fs::read_to_string(path).unwrap();
    let seed: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    SigningKey::from_bytes(&seed.try_into().unwrap())
}

/// Forwards one client to `board`, cutting both sides after the board's
/// `answers`-th answer: a cable pulled mid-sync.
fn cutting_proxy(board: String, answers: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Write as _;
        let (client, _) = listener.accept().unwrap();
        let upstream = std::net::TcpStream::connect(&board[4..]).unwrap();
        let (mut c_in, mut u_out) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c_in, &mut u_out);
        });
        let (mut u_in, mut c_out) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
        let mut seen = 0;
        let mut buf = [0u8; 512];
        while seen < answers {
            let Ok(n) = u_in.read(&mut buf) else { break };
            if n == 0 {
                break;
            }
            seen += buf[..n].iter().filter(|&&b| b == 0).count();
            if seen >= answers {
                // Cut the board off before the client sees the last answer:
                // nothing it sends in reply may reach the board.
                let _ = upstream.shutdown(std::net::Shutdown::Both);
            }
            c_out.write_all(&buf[..n]).unwrap();
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = upstream.shutdown(std::net::Shutdown::Both);
    });
    format!("tcp:{addr}")
}

#[test]
fn a_sync_cut_midway_is_finished_by_the_next_provision() {
    let Some(data) = shared_data() else {
        panic!("the door test needs ../shared/data");
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keygen", "--out", "site.key"]);
    for (id, who) in [
        (1, "Colin_Powell"),
        (2, "Tony_Blair"),
        (3, "Donald_Rumsfeld"),
    ] {
        enroll(d, &data, id, who);
    }
    // Nobody listening: a clear error, nothing else.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp:{}", l.local_addr().unwrap())
    };
    let o = provision(d, &closed, "site.key", &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no board at"), "{}", text(&o));

    let edge = Edge::boot(d);
    let port = edge.port();
    // info, claim, list, then one signed enroll per person (the nonce is known
    // from info and each answer): cut after the first enroll.
    let proxy = cutting_proxy(port.clone(), 4);
    let o = provision(d, &proxy, "site.key", &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("closed the link"), "{}", text(&o));
    let listed = Board::connect(&port)
        .unwrap()
        .list(&facegate_key(&d.join("site.key")))
        .unwrap();
    assert_eq!(listed.len(), 1, "one person made it before the cut");
    // The site database is untouched; the next run finishes the sync.
    let o = provisioned(d, &port, &[]);
    assert!(
        o.contains("provisioned: 2 enrolled or updated, 0 removed, 1 unchanged"),
        "{o}"
    );
    let o = provisioned(d, &port, &[]);
    assert!(o.contains("already in sync: 3 people"), "{o}");
    let shown = ok(d, &["db", "show", "site.fgdb"]);
    assert!(shown.contains("Donald_Rumsfeld"), "{shown}");
}
