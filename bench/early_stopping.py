"""Early stopping with default arguments: does ``distill`` beat ``train`` on labels alone?

Two tasks, three seeds each; every model is trained with the library's default arguments (only the data,
the seed and the initial weights are given):

* digits: scikit-learn's ``load_digits`` (1797 images 8x8, pixels / 16), an 80/20 split stratified by class
  per seed, the demo's teacher [64, 256, 256, 10] and student [64, 32, 10] (``numaccel/cli/demo.py``);
* synthetic: ``make_classification`` with 784 features (30 informative, 700 redundant, 54 noise), 10
  classes of 2 clusters each, ``class_sep=2.5``, 5 % of the labels redrawn at random (``flip_y=0.05``),
  5000 rows split 70/30 (3500 training rows), scaled by the training rows' overall standard deviation;
  teacher [784, 256, 256, 10], student [784, 32, 10].

Per seed: the teacher is ``train(...)``; the student starts from the same initial weights for
``train(student, X, y)`` (labels alone), ``distill(teacher, student, X, y)`` (the default monitor,
``"kd_loss"``) and ``distill(..., monitor="cross_entropy")``, and, for comparison, for both trainers with
the former defaults (30 epochs on all rows, no early stopping). Test accuracy and the epoch of the weights
kept (``history["best_epoch"]``, counted from 0) are printed as markdown tables.

Run: ``python bench/early_stopping.py`` (both tasks, seeds 0 1 2; about a minute on 2 cores), or
``python bench/early_stopping.py --task digits --seeds 0``; ``--epochs`` and ``--patience`` override the
defaults of the early-stopped runs (the teacher's too), ``--lr`` and ``--tol`` those of the early-stopped
student runs.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import numaccel as na

SIZES = {"digits": ([64, 256, 256, 10], [64, 32, 10]), "synthetic": ([784, 256, 256, 10], [784, 32, 10])}
ROWS = ("teacher", "student, labels only", "student, distilled", "student, distilled (monitor=cross_entropy)",
        "student, labels only, 30 epochs, no early stopping", "student, distilled, 30 epochs, no early stopping")
FORMER = {"epochs": 30, "validation_fraction": 0}  # the defaults before early stopping


def _split(X, y, seed: int, test_fraction: float):
    """Split stratified by class, the test rows drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=round(test_fraction * idx.size), replace=False)] = True
    return X[~test], y[~test], X[test], y[test]


def load(task: str, seed: int):
    """``(X_train, y_train, X_test, y_test)`` of ``task`` for ``seed``."""
    if task == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        X = (data.data / 16.0).astype(np.float32)
        return _split(X, data.target.astype(np.int64), seed, 0.2)
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=5000, n_features=784, n_informative=30, n_redundant=700, n_classes=10,
                               n_clusters_per_class=2, class_sep=2.5, flip_y=0.05, random_state=0)
    Xtr, ytr, Xte, yte = _split(X, y.astype(np.int64), seed, 0.3)
    scale = Xtr.std()
    return (Xtr / scale).astype(np.float32), ytr, (Xte / scale).astype(np.float32), yte


def run(task: str, seed: int, student: dict | None = None, **kw) -> dict:
    """Test accuracy (%) and kept epoch of each model of ``ROWS`` for one seed.

    ``kw`` (``epochs=``, ``patience=``) overrides the defaults of every early-stopped run, the teacher's too;
    ``student`` (``lr=``, ``tol=``) those of the early-stopped student runs only.
    """
    skw = kw | (student or {})
    Xtr, ytr, Xte, yte = load(task, seed)
    teacher_sizes, student_sizes = SIZES[task]
    student0 = na.nn.MLP.init(student_sizes, seed=seed + 1000)
    teacher = na.train(na.nn.MLP.init(teacher_sizes, seed=seed), Xtr, ytr, seed=seed, **kw)
    models = {
        ROWS[0]: teacher,
        ROWS[1]: na.train(student0, Xtr, ytr, seed=seed, **skw),
        ROWS[2]: na.distill(teacher, student0, Xtr, ytr, seed=seed, **skw),
        ROWS[3]: na.distill(teacher, student0, Xtr, ytr, seed=seed, monitor="cross_entropy", **skw),
        ROWS[4]: na.train(student0, Xtr, ytr, seed=seed, **FORMER),
        ROWS[5]: na.distill(teacher, student0, Xtr, ytr, seed=seed, **FORMER),
    }
    return {name: (100.0 * float((m.predict(Xte) == yte).mean()), m.history["best_epoch"])
            for name, m in models.items()}


def table(task: str, seeds: list[int], student: dict | None = None, **kw) -> str:
    results = []
    for seed in seeds:
        print(f"{task}, seed {seed} ...", flush=True)
        results.append(run(task, seed, student, **kw))
    header = ["model"] + [f"acc % s{s} (epoch)" for s in seeds] + ["mean acc %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ROWS:
        cells = [f"{r[name][0]:.2f}" + ("" if r[name][1] is None else f" ({r[name][1]})") for r in results]
        mean = statistics.mean(r[name][0] for r in results)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("digits", "synthetic", "all"), default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override the default epochs= (a maximum) of the early-stopped runs")
    parser.add_argument("--patience", type=int, help="override the default patience= of the early-stopped runs")
    parser.add_argument("--lr", type=float, help="override the default lr= of the early-stopped student runs")
    parser.add_argument("--tol", type=float, help="override the default tol= of the early-stopped student runs")
    args = parser.parse_args(argv)
    kw = {k: v for k, v in (("epochs", args.epochs), ("patience", args.patience)) if v is not None}
    student = {k: v for k, v in (("lr", args.lr), ("tol", args.tol)) if v is not None}
    settings = ", ".join([f"{k}={v}" for k, v in kw.items()] + [f"students' {k}={v}" for k, v in student.items()])
    settings = settings or "default arguments"
    tasks = ("digits", "synthetic") if args.task == "all" else (args.task,)
    out = []
    for task in tasks:
        teacher_sizes, student_sizes = SIZES[task]
        out.append(f"{task}: teacher {teacher_sizes}, student {student_sizes}, {settings}; test accuracy and (in "
                   f"parentheses) the epoch of the weights kept\n\n{table(task, args.seeds, student, **kw)}")
    print("\n\n".join(out))


if __name__ == "__main__":
    main()
