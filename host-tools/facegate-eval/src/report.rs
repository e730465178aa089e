//! Human-readable (Markdown) rendering of an [`EvalReport`]; JSON is serde's.

use std::fmt::Write as _;

use crate::lfw::{EvalReport, PairProtocol};

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn far(x: f64) -> String {
    format!("{x:.0e}")
}

fn pair_line(out: &mut String, name: &str, p: &PairProtocol) {
    let acc = match (&p.kfold, &p.dev) {
        (Some(k), _) => format!("{} ± {}", pct(k.mean), pct(k.std)),
        (None, Some(d)) => format!(
            "{} (threshold {:.4} from the train list)",
            pct(d.test_accuracy),
            d.threshold
        ),
        _ => "n/a (pairs skipped: folds unequal)".into(),
    };
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {acc} | {:.4} | {} |",
        p.pairs,
        p.skipped_pairs,
        p.auc,
        pct(p.eer.far)
    );
}

/// Markdown summary.
pub fn markdown(r: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# facegate eval: {} on {}\n", r.model, r.set);
    let _ = writeln!(out, "- model hash `{}`", r.model_hash);
    let _ = writeln!(out, "- flip test: {}", if r.flip { "yes" } else { "no" });
    let _ = writeln!(
        out,
        "- images: {} ({} could not be embedded)",
        r.images,
        r.failed_images.len()
    );
    let _ = writeln!(
        out,
        "- time: embedding {:.1} s, protocols {:.1} s\n",
        r.embed_seconds, r.protocol_seconds
    );
    if r.view2.is_some() || r.view1.is_some() {
        let _ = writeln!(out, "## Verification pairs\n");
        let _ = writeln!(out, "| protocol | pairs | skipped | accuracy | AUC | EER |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
    }
    if let Some(v2) = &r.view2 {
        pair_line(&mut out, "LFW View 2, 10-fold", v2);
    }
    if let Some(v1) = &r.view1 {
        pair_line(&mut out, "LFW View 1 (dev)", v1);
    }
    if let Some(a) = &r.all_pairs {
        let _ = writeln!(
            out,
            "\n## All pairs ({} genuine, {} impostor)\n",
            a.genuine, a.impostor
        );
        let _ = writeln!(
            out,
            "AUC {:.4}, EER {} at threshold {:.4}\n",
            a.auc,
            pct(a.eer.far),
            a.eer.threshold
        );
        let _ = writeln!(out, "| FAR target | threshold | measured FAR | TAR |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (p, target) in a.tar_at_far.iter().zip(crate::lfw::FAR_TARGETS) {
            let _ = writeln!(
                out,
                "| {} | {:.4} | {:.2e} | {} |",
                far(target),
                p.threshold,
                p.far,
                pct(p.tar)
            );
        }
    }
    if let Some(i) = &r.identification {
        let _ = writeln!(
            out,
            "\n## 1:N identification\n\ngallery {} persons, {} mated probes, {} non-mated probes; rank-1 {}\n",
            i.gallery,
            i.mated_probes,
            i.non_mated_probes,
            pct(i.rank1)
        );
        let _ = writeln!(out, "| FAR | threshold | DIR |");
        let _ = writeln!(out, "|---|---|---|");
        for p in &i.dir_at_far {
            let _ = writeln!(
                out,
                "| {:.2e} | {:.4} | {} |",
                p.far,
                p.threshold,
                pct(p.tar)
            );
        }
    }
    if let Some(a) = &r.advice {
        let _ = writeln!(
            out,
            "\n## Door threshold\n\nFor FAR {}: accept at cosine ≥ **{:.4}**, expected TAR {} (measured FAR {:.2e} on {}).",
            far(a.target_far),
            a.threshold,
            pct(a.expected_tar),
            a.measured_far,
            a.measured_on
        );
    }
    if !r.failed_images.is_empty() {
        let _ = writeln!(out, "\n## Images that could not be embedded\n");
        for (p, e) in &r.failed_images {
            let _ = writeln!(out, "- `{p}`: {e}");
        }
    }
    out
}
