"""The Python baseline for `rtml score` (bench/batch.ts): what a data scientist would write.

Usage (run by bench/batch.ts with Debian's python, which has pandas and xgboost 1.7.4)::

    /usr/bin/python3 bench/batch_baseline.py --model model.json --features FEATURES.json \
        --input rows.csv --output scored.csv --column p_bad [--nthread 1]

pandas ``read_csv``, the bundle's encoding (numbers as read; ordinal categories as their index in
the feature's declared values, an unknown or missing one as NaN), XGBoost's C++ predictor
(``inplace_predict``, category codes as floats, as rtml feeds its evaluator), then ``to_csv`` of
the input columns plus the model's output column. ``FEATURES.json`` is the bundle's feature list
([{name, type, values?}], in model order). Prints one JSON object with the phase timings (s).
"""
import argparse
import json
import sys
import time

t_start = time.perf_counter()
import numpy as np
import pandas as pd
import xgboost as xgb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--column", required=True)
    ap.add_argument("--nthread", type=int, default=1)
    args = ap.parse_args()
    t_imported = time.perf_counter()
    with open(args.features) as f:
        features = json.load(f)
    booster = xgb.Booster(model_file=args.model)
    booster.set_param({"nthread": args.nthread})

    t0 = time.perf_counter()
    df = pd.read_csv(args.input)
    t_read = time.perf_counter()
    X = np.empty((len(df), len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        col = df[f["name"]]
        if f["type"] == "category":
            codes = pd.Categorical(col, categories=f["values"]).codes.astype(np.float32)
            codes[codes < 0] = np.nan
            X[:, j] = codes
        else:
            X[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float32)
    t_encoded = time.perf_counter()
    df[args.column] = booster.inplace_predict(X)
    t_predicted = time.perf_counter()
    df.to_csv(args.output, index=False)
    t_written = time.perf_counter()
    json.dump(
        {
            "rows": len(df),
            "import_s": t_imported - t_start,
            "read_csv_s": t_read - t0,
            "encode_s": t_encoded - t_read,
            "predict_s": t_predicted - t_encoded,
            "to_csv_s": t_written - t_predicted,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
