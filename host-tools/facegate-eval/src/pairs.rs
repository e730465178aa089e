//! LFW pair lists.
//!
//! `pairs.txt` (View 2) starts with a `folds pairs-per-class` header (`10
//! 300`); each fold is that many same-person pairs (`name i j`) followed by
//! as many different-person pairs (`name1 i name2 j`). The View 1 lists
//! (`pairsDevTrain.txt`, `pairsDevTest.txt`) have no header: one fold.

use std::fmt;
use std::path::{Path, PathBuf};

/// One image of an identity-per-folder set: `Name/Name_0001.jpg`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Identity (folder) name.
    pub identity: String,
    /// 1-based image number.
    pub number: u32,
}

impl ImageRef {
    /// Path relative to the set's root, in LFW's naming.
    pub fn relative_path(&self) -> PathBuf {
        PathBuf::from(&self.identity).join(format!("{}_{:04}.jpg", self.identity, self.number))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{:04}", self.identity, self.number)
    }
}

/// A verification pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// First image.
    pub a: ImageRef,
    /// Second image.
    pub b: ImageRef,
    /// Same person?
    pub same: bool,
    /// 1-based line in the list it came from.
    pub line: usize,
}

/// A parsed pair list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairList {
    /// Pairs in file order (fold by fold for View 2).
    pub pairs: Vec<Pair>,
    /// Number of folds (10 for View 2, 1 for View 1 lists).
    pub folds: usize,
}

/// A malformed pair list, with the place to look.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}:{line}: {reason}", file.display())]
pub struct PairsError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses a pair list; `file` is only used in error messages.
pub fn parse_pairs(text: &str, file: &Path) -> Result<PairList, PairsError> {
    let err = |line: usize, reason: String| PairsError {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let num = |line: usize, s: &str| -> Result<u32, PairsError> {
        s.parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| err(line, format!("{s:?} is not an image number")))
    };
    let mut pairs = Vec::new();
    let mut header: Option<(usize, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            [folds, per] if i == 0 => {
                let folds = folds
                    .parse()
                    .map_err(|_| err(n, format!("bad header {line:?}")))?;
                let per = per
                    .parse()
                    .map_err(|_| err(n, format!("bad header {line:?}")))?;
                header = Some((folds, per));
            }
            [name, x, y] => pairs.push(Pair {
                a: ImageRef {
                    identity: (*name).into(),
                    number: num(n, x)?,
                },
                b: ImageRef {
                    identity: (*name).into(),
                    number: num(n, y)?,
                },
                same: true,
                line: n,
            }),
            [n1, x, n2, y] => pairs.push(Pair {
                a: ImageRef {
                    identity: (*n1).into(),
                    number: num(n, x)?,
                },
                b: ImageRef {
                    identity: (*n2).into(),
                    number: num(n, y)?,
                },
                same: false,
                line: n,
            }),
            _ => {
                return Err(err(
                    n,
                    format!("expected `name i j` or `name1 i name2 j`, got {line:?}"),
                ));
            }
        }
    }
    let folds = match header {
        None => 1,
        Some((folds, per)) => {
            if folds == 0 || pairs.len() != folds * 2 * per {
                return Err(err(
                    0,
                    format!(
                        "header promises {folds} folds of 2×{per} pairs, found {} pairs",
                        pairs.len()
                    ),
                ));
            }
            for (k, fold) in pairs.chunks(2 * per).enumerate() {
                let (same, diff) = fold.split_at(per);
                if !same.iter().all(|p| p.same) || diff.iter().any(|p| p.same) {
                    return Err(err(
                        0,
                        format!("fold {k} is not {per} same then {per} different pairs"),
                    ));
                }
            }
            folds
        }
    };
    if pairs.is_empty() {
        return Err(err(0, "no pairs".into()));
    }
    Ok(PairList { pairs, folds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_view2_and_view1() {
        let v2 = "2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n";
        let l = parse_pairs(v2, Path::new("p.txt")).unwrap();
        assert_eq!(l.folds, 2);
        assert_eq!(l.pairs.len(), 4);
        assert_eq!(l.pairs[1].b.relative_path(), PathBuf::from("B/B_0003.jpg"));
        let v1 = "A\t1\t2\nA\t1\tB\t3\n";
        assert_eq!(parse_pairs(v1, Path::new("d.txt")).unwrap().folds, 1);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_pairs("A\t1\t2\nA\tone\t2\n", Path::new("pairs.txt")).unwrap_err();
        assert_eq!(e.to_string(), "pairs.txt:2: \"one\" is not an image number");
        let e = parse_pairs("A 1 2 3 4\n", Path::new("x")).unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_pairs("2\t1\nA\t1\t2\nA\t1\tB\t3\n", Path::new("x")).unwrap_err();
        assert!(e.reason.contains("header promises 2 folds"), "{e}");
        let e = parse_pairs("1\t1\nA\t1\tB\t2\nA\t1\t2\n", Path::new("x")).unwrap_err();
        assert!(e.reason.contains("not 1 same then 1 different"), "{e}");
    }
}
