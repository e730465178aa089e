#!/usr/bin/env python3
"""Independent reference for facegate's verification metrics (numpy + scikit-learn).

Reads `score<TAB>same` lines (pairs in fold order, scores as float32 text)
and prints JSON: k-fold accuracy with the threshold chosen on the other
folds, ROC AUC (scikit-learn), and TAR at FAR targets (exact, by sorting).

Threshold rule (same as facegate's, written independently): candidates are
below every training score, the midpoints of consecutive distinct scores
(float64), and above every score; the first best training accuracy wins.
"""
import json
import sys

import numpy as np
from sklearn.metrics import roc_auc_score


def best_threshold(s, y):
    u = np.unique(s.astype(np.float64))
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])
    acc = ((s.astype(np.float64)[None, :] >= cands[:, None]) == y[None, :]).mean(axis=1)
    return cands[int(np.argmax(acc))]


def main():
    path, folds = sys.argv[1], int(sys.argv[2])
    fars = [float(x) for x in sys.argv[3:]]
    data = np.loadtxt(path, dtype=str, delimiter="\t")
    s = data[:, 0].astype(np.float32)
    y = data[:, 1] == "1"
    n = len(s)
    size = n // folds
    accs = []
    for k in range(folds):
        test = np.zeros(n, dtype=bool)
        test[k * size:(k + 1) * size] = True
        t = best_threshold(s[~test], y[~test])
        accs.append(float(((s[test].astype(np.float64) >= t) == y[test]).mean()))
    gen = np.sort(s[y].astype(np.float64))
    imp = np.sort(s[~y].astype(np.float64))[::-1]
    tar = {}
    for f in fars:
        k = int(np.floor(f * len(imp)))
        # Accept score > the (k+1)-th highest impostor: at most k impostors pass.
        t = imp[k] if k < len(imp) else -np.inf
        tar[str(f)] = float((gen > t).mean())
    print(json.dumps({
        "fold_accuracy": accs,
        "mean": float(np.mean(accs)),
        "std": float(np.std(accs)),
        "auc": float(roc_auc_score(y, s)),
        "tar_at_far": tar,
    }))


if __name__ == "__main__":
    main()
