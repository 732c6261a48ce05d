"""XGBoost's own prediction speed, the baseline `bench/run.ts` compares rtml against.

Usage (run by bench/run.ts; Debian's python, which has xgboost 1.7.4)::

    /usr/bin/python3 bench/xgb_baseline.py --model model.json --rows rows.f32 --features F \
        --preds-out preds.f64 [--single-calls 3000] [--single-reps 5] [--batch-reps 5]

``rows.f32`` holds row-major float32 rows (F per row, NaN = missing) exactly as rtml feeds its
evaluator; for categorical features the values are the category codes. Prints one JSON object
on stdout:

* single_row: ``booster.inplace_predict(x[i:i+1])`` on a 1-row numpy view, each call timed with
  perf_counter_ns after a warmup, rows cycled; median ns per call for each repetition (and the
  mean, the loop's total time over its calls, which is how the Node side measures), plus
  (fewer calls) the classic ``booster.predict(DMatrix(x[i:i+1]))`` path;
* batch: the whole matrix with nthread=1: ``booster.predict(DMatrix(X, nthread=1))`` timing only
  predict (the DMatrix is built outside the timer), and ``inplace_predict(X)``; ns per repetition;
* the DMatrix predictions of every row are written as float64 to ``--preds-out`` so the caller can
  compare them with its own.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import xgboost as xgb


def ns_per_call(fn, rows, calls):
    """(median, mean) per-call ns over `calls` calls cycling through `rows` 1-row views."""
    times = np.empty(calls, dtype=np.int64)
    n = len(rows)
    clock = time.perf_counter_ns
    start = clock()
    for i in range(calls):
        r = rows[i % n]
        t0 = clock()
        fn(r)
        times[i] = clock() - t0
    total = clock() - start
    return float(np.median(times)), total / calls


def model_and_rows_arguments():
    """An argument parser with --model, --rows and --features (shared with xgb_contribs_baseline.py)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--features", type=int, required=True)
    return ap


def load_model_and_rows(args):
    """The booster (one thread) and the rows file as a [rows, features] float32 matrix."""
    X = np.fromfile(args.rows, dtype=np.float32)
    if X.size % args.features != 0:
        sys.exit("rows file holds %d floats, not a multiple of %d features" % (X.size, args.features))
    booster = xgb.Booster(model_file=args.model)
    booster.set_param({"nthread": 1})
    return booster, X.reshape(-1, args.features)


def model_dmatrix(booster, data):
    """A DMatrix must carry the model's feature names and types ('c' = categorical codes)."""
    return xgb.DMatrix(data, feature_names=booster.feature_names, feature_types=booster.feature_types,
                       enable_categorical=True, nthread=1)


def main():
    ap = model_and_rows_arguments()
    ap.add_argument("--preds-out", required=True)
    ap.add_argument("--single-calls", type=int, default=3000)
    ap.add_argument("--single-reps", type=int, default=5)
    ap.add_argument("--batch-reps", type=int, default=5)
    args = ap.parse_args()
    booster, X = load_model_and_rows(args)
    n = X.shape[0]
    # inplace_predict takes numpy with category codes as-is: the split type lives in each tree,
    # and the model's feature_types (saved in the JSON) mark the categorical columns.
    one_rows = [X[i : i + 1] for i in range(min(n, 1000))]

    def dmatrix(data):
        return model_dmatrix(booster, data)

    # Warm up every path (first calls allocate the predictor's thread-local buffers).
    for r in one_rows[:200]:
        booster.inplace_predict(r)
    dm_all = dmatrix(X)
    booster.predict(dm_all)
    booster.inplace_predict(X)

    single_inplace = [ns_per_call(booster.inplace_predict, one_rows, args.single_calls) for _ in range(args.single_reps)]
    single_dmatrix = [
        ns_per_call(lambda r: booster.predict(dmatrix(r)), one_rows, max(200, args.single_calls // 5))[0]
        for _ in range(max(1, args.single_reps // 2))
    ]

    clock = time.perf_counter_ns
    batch_dmatrix = []
    batch_inplace = []
    preds = None
    for _ in range(args.batch_reps):
        dm = dmatrix(X)  # built outside the timer: only predict is measured
        t0 = clock()
        p = booster.predict(dm)
        batch_dmatrix.append(clock() - t0)
        t0 = clock()
        q = booster.inplace_predict(X)
        batch_inplace.append(clock() - t0)
        if preds is None:
            preds = p
            inplace_vs_dmatrix = float(np.max(np.abs(q.astype(np.float64) - p.astype(np.float64)))) if n else 0.0

    np.ascontiguousarray(preds, dtype=np.float64).tofile(args.preds_out)
    json.dump(
        {
            "xgboost": xgb.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "rows": n,
            "features": args.features,
            "feature_types": booster.feature_types,
            "single_row": {
                "inplace_predict_ns": [m for m, _ in single_inplace],
                "inplace_predict_median_ns": statistics.median(m for m, _ in single_inplace),
                "inplace_predict_mean_ns": [a for _, a in single_inplace],
                "inplace_predict_mean_median_ns": statistics.median(a for _, a in single_inplace),
                "dmatrix_predict_ns": single_dmatrix,
                "dmatrix_predict_median_ns": statistics.median(single_dmatrix),
                "calls_per_rep": args.single_calls,
            },
            "batch": {
                "dmatrix_predict_ns": batch_dmatrix,
                "dmatrix_predict_median_ns": statistics.median(batch_dmatrix),
                "inplace_predict_ns": batch_inplace,
                "inplace_predict_median_ns": statistics.median(batch_inplace),
                "inplace_vs_dmatrix_max_diff": inplace_vs_dmatrix,
            },
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
