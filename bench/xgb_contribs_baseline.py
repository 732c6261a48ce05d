"""XGBoost's own contribution speed (TreeSHAP, predict(pred_contribs=True)), the baseline
`bench/run.ts --only shap` compares rtml's contributions against.

Usage (run by bench/run.ts; Debian's python, which has xgboost 1.7.4)::

    /usr/bin/python3 bench/xgb_contribs_baseline.py --model model.json --rows rows.f32 --features F \
        --batch-rows N --contribs-out contribs.f64 [--single-calls 300] [--single-reps 5] [--batch-reps 3]

``rows.f32`` holds row-major float32 rows (F per row, NaN = missing) exactly as rtml feeds its
evaluator; categorical features hold category codes. Prints one JSON object on stdout:

* single_row: ``booster.predict(DMatrix(x[i:i+1]), pred_contribs=True)`` timed with
  perf_counter_ns per call, the DMatrix built outside the timer (inplace_predict has no
  contributions), rows cycled; the median per repetition, and with the DMatrix built inside;
* batch: the first ``--batch-rows`` rows in one DMatrix (nthread=1), predict timed; ns per
  repetition;
* the batch's contributions (rows x groups x (F + 1), float32 written as float64) go to
  ``--contribs-out`` so the caller checks its own against them.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import xgboost as xgb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the repo
from xgb_baseline import load_model_and_rows, model_and_rows_arguments, model_dmatrix  # noqa: E402


def main():
    ap = model_and_rows_arguments()
    ap.add_argument("--batch-rows", type=int, required=True)
    ap.add_argument("--contribs-out", required=True)
    ap.add_argument("--single-calls", type=int, default=300)
    ap.add_argument("--single-reps", type=int, default=5)
    ap.add_argument("--batch-reps", type=int, default=3)
    args = ap.parse_args()
    booster, X = load_model_and_rows(args)

    def dmatrix(data):
        return model_dmatrix(booster, data)

    singles = [dmatrix(X[i:i + 1]) for i in range(min(len(X), 200))]
    for d in singles[:20]:  # warm up the predictor's buffers
        booster.predict(d, pred_contribs=True)
    clock = time.perf_counter_ns

    def single_rep(with_dmatrix):
        times = []
        for i in range(args.single_calls):
            if with_dmatrix:
                t0 = clock()
                booster.predict(dmatrix(X[i % len(X):i % len(X) + 1]), pred_contribs=True)
            else:
                d = singles[i % len(singles)]
                t0 = clock()
                booster.predict(d, pred_contribs=True)
            times.append(clock() - t0)
        return float(np.median(times))

    single = [single_rep(False) for _ in range(args.single_reps)]
    single_dm = [single_rep(True) for _ in range(max(1, args.single_reps // 2))]

    batch = X[:args.batch_rows]
    dm = dmatrix(batch)
    batch_ns = []
    contribs = None
    for _ in range(args.batch_reps):
        t0 = clock()
        contribs = booster.predict(dm, pred_contribs=True)
        batch_ns.append(clock() - t0)
    np.ascontiguousarray(contribs, dtype=np.float64).tofile(args.contribs_out)
    json.dump({
        "xgboost": xgb.__version__,
        "single_row": {"predict_ns": single, "predict_median_ns": statistics.median(single),
                       "with_dmatrix_ns": single_dm, "with_dmatrix_median_ns": statistics.median(single_dm)},
        "batch": {"rows": len(batch), "predict_ns": batch_ns, "predict_median_ns": statistics.median(batch_ns)},
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
