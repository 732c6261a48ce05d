#!/usr/bin/python3
"""Train the credit-risk example model and write its rtml bundle.

Run from the repository root with Debian's Python (xgboost 1.7.4, pandas, scikit-learn):

    /usr/bin/python3 examples/credit/train.py

Idempotent and deterministic (fixed seeds, nthread=2): re-running rewrites the same files.

Data: ``lending_club.csv`` beside this script -- 9,857 Lending Club loans (Q1 2016, from
the R package modeldata), 22 features and ``Class`` good/bad (about 5.2% bad).

Model: XGBoost ``binary:logistic`` giving P(Class == "bad"): label 1 = bad, classes
[good, bad].  The five string columns use XGBoost's native categorical support (pandas
``category`` dtype whose categories are exactly the sorted unique values, so the code sent
to the model is the index in that list = ``encoding: ordinal`` in rtml.yaml); numeric
columns are passed through.  No scale_pos_weight / resampling: the 5% imbalance is left
as is so the output stays a calibrated probability (the decision thresholds belong to
the serving policy); base_score is set to the training bad rate (xgboost 1.7 does not
estimate it and would otherwise start every loan at 0.5).  Regularised because the data
are small and noisy (eta 0.02, 200 trees, depth 4, min_child_weight 10, lambda 10,
row/column subsampling, max_cat_threshold 8); these values were picked by 5-fold CV on the
training split only.

Split: stratified 80/20 with random_state 42.  Outputs (all beside this script):

* ``model.json``    Booster.save_model (XGBoost JSON)
* ``rtml.yaml``     the bundle manifest: features with types, ranges, category values
* ``golden.jsonl``  the first 500 rows of test.csv plus 50 of the following test rows with
                    1-4 nullable features set to null, and the model's probability for each
                    (xgboost's own predict, float32 written exactly)
* ``metrics.json``  test ROC AUC, log loss, Brier score, sizes, xgboost version, params
* ``train.csv``     the training rows, original CSV lines (the reference profile's data)
* ``test.csv``      the held-out rows, original CSV lines unchanged (all columns incl.
                    Class), in their original file order -- for monitoring / replay work

Feature declarations: integer type where every value is integral; ``min: 0`` for every
numeric column (amounts, rates and counts are never negative); ``max: 100`` only for
int_rate (revol_util reaches 144.3 and all_util 198 in the data, so they get no max).
The application fields (funded_amnt, term, int_rate, sub_grade, addr_state,
verification_status, annual_inc) are required; the credit-bureau fields and emp_length are
``nullable: true`` (missing -> NaN -> the trees' default branch), as bureau data can be
unavailable for a real applicant.
"""
import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "lending_club.csv")
SHARED_DATA = "/work/shared/datasets/lending_club.csv"  # fallback source of the same file

SEED = 42
TEST_SIZE = 0.2
N_ROUNDS = 200
N_GOLDEN = 500
N_GOLDEN_NULL = 50
TARGET = "Class"
CLASSES = ["good", "bad"]  # label 0, label 1
CATEGORICAL = ["term", "sub_grade", "addr_state", "verification_status", "emp_length"]
REQUIRED = {"funded_amnt", "term", "int_rate", "sub_grade", "addr_state",
            "verification_status", "annual_inc"}
MAX = {"int_rate": 100}
PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": ["auc", "logloss"],
    "tree_method": "hist",
    "eta": 0.02,
    "max_depth": 4,
    "min_child_weight": 10,
    "reg_lambda": 10,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "max_cat_threshold": 8,
    "nthread": 2,
    "seed": SEED,
}


def load():
    if not os.path.exists(DATA):
        if not os.path.exists(SHARED_DATA):
            sys.exit("missing %s" % DATA)
        shutil.copyfile(SHARED_DATA, DATA)
    return pd.read_csv(DATA)


def feature_specs(df):
    specs = []
    for c in df.columns:
        if c == TARGET:
            continue
        f = {"name": c}
        if c in CATEGORICAL:
            f["type"] = "category"
        else:
            col = df[c]
            f["type"] = "integer" if bool((col == np.round(col)).all()) else "number"
            if float(col.min()) < 0:
                raise SystemExit("%s has negative values: revisit min" % c)
            f["min"] = 0
            if c in MAX:
                if float(col.max()) > MAX[c]:
                    raise SystemExit("%s exceeds its declared max" % c)
                f["max"] = MAX[c]
        if c not in REQUIRED:
            f["nullable"] = True
        if c in CATEGORICAL:
            f["values"] = sorted(str(v) for v in df[c].unique())
            f["encoding"] = "ordinal"
        specs.append(f)
    return specs


def model_frame(df, specs):
    """Raw columns -> model input frame (categories with exactly the declared values)."""
    out = {}
    for f in specs:
        s = df[f["name"]]
        if f["type"] == "category":
            out[f["name"]] = pd.Categorical(s, categories=f["values"])
        else:
            out[f["name"]] = s.astype(float)
    return pd.DataFrame(out, index=df.index)


def json_value(v, f):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if f["type"] == "category":
        return str(v)
    if f["type"] == "integer":
        return int(v)
    return float(v)


def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(yaml_value(x) for x in v) + "]"


def write_yaml(path, specs, auc):
    lines = [
        "# written by examples/credit/train.py -- regenerate instead of editing",
        "name: credit",
        'version: "1"',
        "description: %s" % json.dumps(
            "Lending Club credit risk: probability that a loan goes bad. XGBoost %s "
            "binary:logistic, %d trees, native categorical splits; test ROC AUC %.4f."
            % (xgb.__version__, N_ROUNDS, auc)),
        "model:",
        "  format: xgboost-json",
        '  path: "model.json"',
        "features:",
    ]
    for f in specs:
        parts = []
        for k in ("name", "type", "nullable", "min", "max", "values", "encoding"):
            if k in f:
                v = f[k]
                parts.append("%s: %s" % (k, v if k in ("type", "encoding") else yaml_value(v)))
        lines.append("  - {" + ", ".join(parts) + "}")
    lines += [
        "outputs:",
        "  type: binary",
        "  classes: %s" % yaml_value(CLASSES),
        '  positive_class: "bad"',
        'golden: "golden.jsonl"',
        "policy: policy.yaml",
        "monitoring:",
        "  # reference.json is written by: rtml profile examples/credit --data examples/credit/train.csv",
        "  #   --label Class --holdout examples/credit/test.csv",
        "  reference: reference.json",
        "  on_critical: fallback      # a critical alert puts decisions on the fallback policy (safe mode)",
        "  release_after_s: 30        # ...until the service has been clear this long",
        "  count_window: 1000",
        "  evaluate_every: 50",
    ]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main():
    df = load()
    specs = feature_specs(df)
    y = (df[TARGET] == "bad").astype(int).to_numpy()
    idx_train, idx_test = train_test_split(np.arange(len(df)), test_size=TEST_SIZE,
                                           stratify=y, random_state=SEED)
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)  # keep file order
    train, test = df.iloc[idx_train], df.iloc[idx_test]

    dtrain = xgb.DMatrix(model_frame(train, specs), label=y[idx_train], enable_categorical=True)
    dtest = xgb.DMatrix(model_frame(test, specs), label=y[idx_test], enable_categorical=True)
    params = dict(PARAMS, base_score=float(np.mean(y[idx_train])))
    booster = xgb.train(params, dtrain, N_ROUNDS)
    p_test = booster.predict(dtest)
    auc = float(roc_auc_score(y[idx_test], p_test))
    metrics = {
        "test_roc_auc": round(auc, 6),
        "test_log_loss": round(float(log_loss(y[idx_test], p_test.astype(np.float64))), 6),
        "test_brier": round(float(brier_score_loss(y[idx_test], p_test)), 6),
        "test_mean_prediction": round(float(np.mean(p_test)), 6),
        "test_bad_rate": round(float(np.mean(y[idx_test])), 6),
        "train_bad_rate": round(float(np.mean(y[idx_train])), 6),
        "n_train": int(len(idx_train)),
        "n_test": int(len(idx_test)),
        "num_trees": N_ROUNDS,
        "xgboost_version": xgb.__version__,
        "split": {"test_size": TEST_SIZE, "stratified": True, "random_state": SEED},
        "params": {k: v for k, v in params.items() if k != "eval_metric"},
    }

    booster.save_model(os.path.join(HERE, "model.json"))
    write_yaml(os.path.join(HERE, "rtml.yaml"), specs, auc)
    with open(os.path.join(HERE, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")

    # held-out rows, byte-for-byte the original CSV lines
    with open(DATA, "r", encoding="utf-8", newline="") as fh:
        lines = fh.read().splitlines()
    if len(lines) - 1 != len(df):
        raise SystemExit("unexpected CSV layout (multi-line fields?)")
    with open(os.path.join(HERE, "test.csv"), "w", encoding="utf-8", newline="") as fh:
        fh.write(lines[0] + "\n")
        for i in idx_test:
            fh.write(lines[i + 1] + "\n")
    # training rows, the same way: the reference profile is measured on them
    with open(os.path.join(HERE, "train.csv"), "w", encoding="utf-8", newline="") as fh:
        fh.write(lines[0] + "\n")
        for i in idx_train:
            fh.write(lines[i + 1] + "\n")

    # golden rows: first N_GOLDEN test rows, then N_GOLDEN_NULL rows with some nulls
    golden = test.iloc[:N_GOLDEN + N_GOLDEN_NULL].drop(columns=[TARGET]).copy()
    golden = golden.astype(object)
    nullable = [f["name"] for f in specs if f.get("nullable")]
    rng = np.random.default_rng(SEED)
    for r in range(N_GOLDEN, N_GOLDEN + N_GOLDEN_NULL):
        k = int(rng.integers(1, 5))
        for c in rng.choice(nullable, size=k, replace=False):
            golden.iat[r, golden.columns.get_loc(c)] = None
    expected = booster.predict(xgb.DMatrix(model_frame(golden, specs), enable_categorical=True))
    with open(os.path.join(HERE, "golden.jsonl"), "w", encoding="utf-8") as fh:
        for r in range(len(golden)):
            row = {f["name"]: json_value(golden.iat[r, golden.columns.get_loc(f["name"])], f)
                   for f in specs}
            fh.write(json.dumps({"row": row, "expected": [float(expected[r])]},
                                allow_nan=False) + "\n")

    print("train %d rows, test %d rows (bad rate %.3f)" % (len(idx_train), len(idx_test),
                                                           float(np.mean(y[idx_test]))))
    print("test ROC AUC %.4f  log loss %.4f  Brier %.4f  mean p %.4f" % (
        auc, metrics["test_log_loss"], metrics["test_brier"], metrics["test_mean_prediction"]))
    print("wrote model.json, rtml.yaml, golden.jsonl (%d rows), metrics.json, train.csv, test.csv in %s"
          % (len(golden), os.path.relpath(HERE)))


if __name__ == "__main__":
    main()
