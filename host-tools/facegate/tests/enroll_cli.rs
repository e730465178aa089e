//! `facegate enroll` with the engine blob: templates into the site database,
//! outliers rejected, bad photos reported, replacing a person, model binding.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facegate_e2e::shared_data;

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

fn lfw(data: &Path, name: &str, n: u32) -> String {
    data.join(format!("lfw/aligned_112/{name}/{name}_{n:04}.jpg"))
        .display()
        .to_string()
}

#[test]
fn enroll_two_people_reject_outliers_and_bad_photos() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_mfn_random.onnx");
    let calib = data.join("celeba/wild_112");
    let q = facegate(
        d,
        &[
            "quantize",
            "--model",
            fixture.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--images",
            "16",
            "--out",
            "m.fgm",
        ],
    );
    assert!(q.status.success(), "{}", text(&q));

    std::fs::write(d.join("broken.jpg"), b"not a jpeg").unwrap();
    // The same photo twice agrees perfectly; a demanding threshold rejects the third.
    let a1 = lfw(&data, "Abel_Pacheco", 1);
    let a2 = lfw(&data, "Abel_Pacheco", 2);
    let out = facegate(
        d,
        &[
            "enroll",
            "--aligned",
            "--model",
            "m.fgm",
            "--id",
            "1",
            "--name",
            "Abel",
            "--min-agreement",
            "0.9999",
            &a1,
            &a1,
            &a2,
            "broken.jpg",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("rejected broken.jpg"), "{t}");
    assert!(
        t.contains(&format!(
            "rejected {a2}: agrees with the other photos only to"
        )),
        "{t}"
    );
    assert!(t.contains("with 2 template(s)"), "{t}");

    let z: Vec<String> = (1..=3).map(|n| lfw(&data, "Akhmed_Zakayev", n)).collect();
    let mut args = vec![
        "enroll",
        "--aligned",
        "--model",
        "m.fgm",
        "--id",
        "2",
        "--name",
        "Akhmed",
        "--min-agreement",
        "-1",
    ];
    args.extend(z.iter().map(String::as_str));
    let out = facegate(d, &args);
    assert!(out.status.success(), "{}", text(&out));
    // Id 1 is taken: refused unless --replace, the database untouched.
    let before = std::fs::read(d.join("site.fgdb")).unwrap();
    let dup = facegate(
        d,
        &[
            "enroll",
            "--aligned",
            "--model",
            "m.fgm",
            "--id",
            "1",
            "--name",
            "Other",
            &a2,
        ],
    );
    assert_eq!(dup.status.code(), Some(1), "{}", text(&dup));
    assert!(
        text(&dup).contains("id 1 is already enrolled in site.fgdb as \"Abel\"; pass --replace"),
        "{}",
        text(&dup)
    );
    assert_eq!(std::fs::read(d.join("site.fgdb")).unwrap(), before);
    // Re-enrolling person 1 with --replace replaces them.
    let out = facegate(
        d,
        &[
            "enroll",
            "--aligned",
            "--model",
            "m.fgm",
            "--id",
            "1",
            "--name",
            "Abel P",
            "--replace",
            "--min-agreement",
            "-1",
            &a1,
            &a2,
        ],
    );
    assert!(
        text(&out).contains("site.fgdb now holds 2 people"),
        "{}",
        text(&out)
    );

    let check = facegate(d, &["db", "check", "site.fgdb"]);
    let t = text(&check);
    assert!(check.status.success(), "{t}");
    assert!(
        t.contains("Abel P") && t.contains("Akhmed") && t.contains("records   2"),
        "{t}"
    );

    // Verify on the host: an enrolled photo is accepted, another person is not.
    let v = facegate(
        d,
        &[
            "verify",
            "--aligned",
            "--model",
            "m.fgm",
            "--threshold",
            "0.9999",
            &a1,
        ],
    );
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).starts_with("ACCEPT Abel P (id 1)"), "{}", text(&v));
    let stranger = lfw(&data, "Aaron_Peirsol", 1);
    let v = facegate(
        d,
        &[
            "verify",
            "--aligned",
            "--model",
            "m.fgm",
            "--threshold",
            "0.9999",
            &stranger,
        ],
    );
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(
        text(&v).starts_with("REJECT (BelowThreshold)"),
        "{}",
        text(&v)
    );
    // Without a threshold there is no decision, not a guessed one.
    let v = facegate(d, &["verify", "--aligned", "--model", "m.fgm", &a1]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("no threshold: pass --deployment"),
        "{}",
        text(&v)
    );

    // A threshold measured with the flip test sits on another score scale:
    // no door flips, so such a file is refused, not used.
    let hash = text(&q)
        .lines()
        .find_map(|l| l.trim().strip_prefix("model hash"))
        .map(|h| h.trim().to_string())
        .expect("quantize prints the model hash");
    std::fs::write(
        d.join("flip.toml"),
        format!(
            "model_hash = \"{hash}\"\nmodel = \"m\"\ntarget_far = 0.001\nthreshold = 0.5\nmeasured_far = 0.001\nexpected_tar = 0.5\nmeasured_on = \"LFW\"\nflip_test = true\n"
        ),
    )
    .unwrap();
    let v = facegate(
        d,
        &[
            "verify",
            "--aligned",
            "--model",
            "m.fgm",
            "--deployment",
            "flip.toml",
            &a1,
        ],
    );
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("was measured with the flip test"),
        "{}",
        text(&v)
    );

    // Templates of another model are refused.
    let other = facegate(
        d,
        &[
            "quantize",
            "--model",
            fixture.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--images",
            "8",
            "--out",
            "other.fgm",
        ],
    );
    assert!(other.status.success());
    let out = facegate(
        d,
        &[
            "enroll",
            "--aligned",
            "--model",
            "other.fgm",
            "--id",
            "3",
            "--name",
            "X",
            &a1,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("site.fgdb cannot take templates of other.fgm"),
        "{}",
        text(&out)
    );
}

/// Raw photos: each refused photo gets its reason, the good ones enroll.
#[test]
fn enroll_from_raw_photos_names_every_refusal() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = |who: &str, n: u32| data.join(format!("lfw/raw_subset/{who}/{who}_{n:04}.jpg"));
    let gore: Vec<PathBuf> = (1..=4).map(|n| raw("Al_Gore", n)).collect();
    // A wall (no face), two people side by side, a blurred face, a text file.
    image::RgbImage::from_pixel(200, 160, image::Rgb([170, 160, 150]))
        .save(d.join("wall.png"))
        .unwrap();
    let a = image::open(&gore[0]).unwrap().to_rgb8();
    let b = image::open(raw("Adrien_Brody", 1)).unwrap().to_rgb8();
    let mut pair = image::RgbImage::new(500, 250);
    image::imageops::overlay(&mut pair, &a, 0, 0);
    image::imageops::overlay(&mut pair, &b, 250, 0);
    pair.save(d.join("pair.png")).unwrap();
    image::imageops::blur(&a, 3.0)
        .save(d.join("blurred.png"))
        .unwrap();
    std::fs::write(d.join("notes.jpg"), "meeting at 10").unwrap();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/nano.fgm");
    let mut args: Vec<String> = [
        "enroll",
        "--model",
        model.to_str().unwrap(),
        "--id",
        "1",
        "--name",
        "Al Gore",
        "--face",
        "only",
        "wall.png",
        "pair.png",
        "blurred.png",
        "notes.jpg",
    ]
    .map(String::from)
    .to_vec();
    args.extend(gore.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = facegate(d, &args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("rejected wall.png: no face found"), "{t}");
    assert!(
        t.contains("rejected pair.png: 2 faces")
            && t.contains("pass --face largest or --face central"),
        "{t}"
    );
    assert!(t.contains("rejected blurred.png: face too blurred"), "{t}");
    assert!(
        t.contains("rejected notes.jpg: not a readable image"),
        "{t}"
    );
    // Al_Gore_0003 shows a second face: refused with --face only.
    assert!(t.contains("Al_Gore_0003.jpg: 2 faces"), "{t}");
    assert!(
        t.contains("with 3 template(s) from 8 photo(s), 5 rejected"),
        "{t}"
    );

    // Nothing usable: an error, and no database written.
    let out = facegate(
        d,
        &[
            "enroll",
            "--db",
            "empty.fgdb",
            "--model",
            model.to_str().unwrap(),
            "--id",
            "2",
            "--name",
            "Nobody",
            "wall.png",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no usable photo of Nobody"),
        "{}",
        text(&out)
    );
    assert!(!d.join("empty.fgdb").exists());
}
