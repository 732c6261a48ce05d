#!/usr/bin/python3
"""Train the card-fraud example model on rtml's own point-in-time features.

Run from the repository root with Debian's Python (python3-xgboost 1.7.4, pandas,
scikit-learn, PyYAML), after generating the data and backfilling the features:

    node --import tsx examples/card-fraud/generate.ts
    npx rtml backfill examples/card-fraud --events transactions=examples/card-fraud/data/transactions.csv \\
        --entities customer=examples/card-fraud/data/customers.csv --at event_time --before \\
        --input examples/card-fraud/data/transactions.csv --output examples/card-fraud/out/features.csv
    /usr/bin/python3 examples/card-fraud/train.py [--features PATH] [--outcomes PATH]

Idempotent and deterministic (fixed seeds, nthread=2): the same features file gives the same
model.json, golden.jsonl and metrics.json.

INPUT. ``out/features.csv`` as written by ``rtml backfill``: one row per transaction with every
model feature of ``rtml.yaml`` (by name: request features passed through from the input row,
aggregates, entity fields and derived features) computed as of just before that transaction,
plus pass-through columns of which ``txn_id`` and ``event_time`` are required; an empty cell is
a missing value. This script never computes a feature itself: training on the numbers rtml
computes (the same aggregate code the real-time stores run) is what keeps training and serving
from disagreeing. The label ``is_fraud`` (0/1) is joined from ``data/outcomes.csv`` by txn_id;
every row must have one.

FEATURES. The list, order, types, category values, defaults and nullability come from
``rtml.yaml`` (this script does not write it). Each value is prepared the way rtml encodes a
request: a missing value takes the feature's ``default`` if it has one, else NaN when the feature
is ``nullable`` (an error otherwise); a category outside ``values`` is an error, or missing with
``on_unknown: missing``; a value outside ``min``/``max`` is an error. Categories use XGBoost's
native categorical support (pandas ``category`` dtype whose categories are exactly ``values``,
in order = ``encoding: ordinal``).

SPLIT. By time, no shuffling: the first 45 days (from midnight UTC of the first event) train,
the remaining days test. Every feature of a row only looks back in time, so the test rows'
features use training-period events but no test label or later event reaches training.

MODEL. ``binary:logistic`` giving P(fraud) (classes [legit, fraud]), 300 trees of depth 5,
eta 0.05, min_child_weight 10, lambda 5, row and column subsampling 0.8; categorical splits
partition up to 16 categories. No re-weighting of the ~1.3% fraud class, so the score stays a
calibrated probability (base_score = the training fraud rate); thresholds belong to the policy.
The parameters won among a few settings (depth 4-6, eta 0.05-0.1, 300-500 trees) trained on
days 1-38 and compared on days 39-45: chosen on training days only.

OUTPUT, beside this script:
* ``model.json``    Booster.save_model (XGBoost JSON; feature names = the rtml.yaml names)
* ``golden.jsonl``  300 test rows {row, expected: [p]}: 200 at random, 50 frauds, 25 whose
                    amount_mean_30d is missing (no 30-day history), 25 with 1-3 nullable
                    features set to null; expected = xgboost's own predict (float32 exact)
* ``metrics.json``  test ROC AUC, PR AUC, log loss, Brier, sizes, rates, split, params, recall
                    per generator scenario, feature importance, features file checksum
* ``out/train.csv``, ``out/test.csv``  the features of each split with ``label`` legit/fraud,
                    for ``rtml profile`` (reference.json); not committed (out/ is ignored)
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import pandas as pd
import xgboost as xgb
import yaml
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 42
TRAIN_DAYS = 45
N_ROUNDS = 300
CLASSES = ["legit", "fraud"]  # label 0, label 1
GOLDEN = {"random": 200, "fraud": 50, "no_history": 25, "nulled": 25}
PARAMS = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "eta": 0.05,
    "max_depth": 5,
    "min_child_weight": 10,
    "reg_lambda": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "max_cat_to_onehot": 1,
    "max_cat_threshold": 16,
    "nthread": 2,
    "seed": SEED,
}
REQUIRED_COLUMNS = ["txn_id", "event_time"]


def fail(msg):
    sys.exit("train.py: " + msg)


def load_specs():
    with open(os.path.join(HERE, "rtml.yaml"), encoding="utf-8") as fh:
        manifest = yaml.safe_load(fh)
    specs = manifest["features"]
    if manifest["outputs"]["classes"] != CLASSES:
        fail("rtml.yaml outputs.classes must be %s" % CLASSES)
    for f in specs:
        if f["type"] not in ("number", "integer", "category"):
            fail("feature %s: type %s is not handled here" % (f["name"], f["type"]))
        if f["type"] == "category" and f.get("encoding", "onehot") != "ordinal":
            fail("feature %s: this script trains native categoricals (encoding: ordinal)" % f["name"])
    return specs


def read_features(path, specs):
    if not os.path.exists(path):
        fail("no features file %s: run `rtml backfill` first (see the docstring)" % path)
    names = [f["name"] for f in specs]
    text_cols = [f["name"] for f in specs if f["type"] == "category"] + REQUIRED_COLUMNS
    # Only an empty cell is missing ("NA" or "null" would be a value, and rejected below).
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in text_cols})
    missing = [c for c in names + REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        fail("%s lacks columns %s" % (path, ", ".join(missing)))
    if df["txn_id"].isna().any() or df["txn_id"].duplicated().any():
        fail("%s: txn_id must be present and unique" % path)
    return df


def prepare(df, specs):
    """Feature columns as rtml encodes them: default, NaN, category codes; errors like rtml's."""
    out = {}
    for f in specs:
        name, col = f["name"], df[f["name"]]
        if f["type"] == "category":
            col = col.astype(object)
            if "default" in f:
                col = col.fillna(f["default"])
            unknown = col.notna() & ~col.isin(f["values"])
            if unknown.any():
                if f.get("on_unknown", "error") != "missing":
                    fail("feature %s: values outside rtml.yaml's list: %s"
                         % (name, sorted(col[unknown].unique())[:10]))
                col = col.where(~unknown)
            if col.isna().any() and not f.get("nullable", False):
                fail("feature %s: %d missing values but it is not nullable" % (name, col.isna().sum()))
            out[name] = pd.Categorical(col, categories=f["values"])
        else:
            col = pd.to_numeric(col, errors="coerce").astype(float)
            bad = df[name].notna() & col.isna()
            if bad.any():
                fail("feature %s: non-numeric values such as %r" % (name, df[name][bad].iloc[0]))
            if "default" in f:
                col = col.fillna(float(f["default"]))
            if col.isna().any() and not f.get("nullable", False):
                fail("feature %s: %d missing values but it is not nullable" % (name, col.isna().sum()))
            if not np.isfinite(col.dropna()).all():
                fail("feature %s: infinite values" % name)
            if "min" in f and (col < f["min"]).any():
                fail("feature %s: values below min %s" % (name, f["min"]))
            if "max" in f and (col > f["max"]).any():
                fail("feature %s: values above max %s" % (name, f["max"]))
            if f["type"] == "integer" and (col.dropna() != np.round(col.dropna())).any():
                fail("feature %s: non-integral values" % name)
            out[name] = col
    return pd.DataFrame(out, index=df.index)


def json_value(v, f):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if f["type"] == "category":
        return str(v)
    if f["type"] == "integer":
        return int(v)
    return float(v)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", default=os.path.join(HERE, "out", "features.csv"))
    ap.add_argument("--outcomes", default=os.path.join(HERE, "data", "outcomes.csv"))
    args = ap.parse_args()

    specs = load_specs()
    names = [f["name"] for f in specs]
    raw = read_features(args.features, specs)
    outcomes = pd.read_csv(args.outcomes, keep_default_na=False, dtype={"txn_id": str})
    if "scenario" not in outcomes.columns:
        outcomes["scenario"] = ""
    df = raw.merge(outcomes[["txn_id", "is_fraud", "scenario"]], on="txn_id", how="left")
    if df["is_fraud"].isna().any():
        fail("%d rows have no outcome in %s" % (df["is_fraud"].isna().sum(), args.outcomes))
    y = df["is_fraud"].astype(int).to_numpy()
    t = pd.to_datetime(df["event_time"], utc=True)
    if t.isna().any():
        fail("unparseable event_time values")
    start = t.min().floor("D")
    cut = start + pd.Timedelta(days=TRAIN_DAYS)
    train_mask = (t < cut).to_numpy()
    X = prepare(df, specs)
    tr, te = np.flatnonzero(train_mask), np.flatnonzero(~train_mask)
    if len(tr) == 0 or len(te) == 0:
        fail("the split by time left an empty side (data from %s to %s)" % (t.min(), t.max()))

    dtrain = xgb.DMatrix(X.iloc[tr], label=y[tr], enable_categorical=True)
    dtest = xgb.DMatrix(X.iloc[te], label=y[te], enable_categorical=True)
    params = dict(PARAMS, base_score=float(np.mean(y[tr])))
    booster = xgb.train(params, dtrain, N_ROUNDS)
    p = booster.predict(dtest)
    yt = y[te]
    auc = float(roc_auc_score(yt, p))
    pr_auc = float(average_precision_score(yt, p))

    scen = df["scenario"].iloc[te].fillna("").replace("", "ordinary").to_numpy()
    by_scenario = {}
    for s in sorted(set(scen)):
        sel = scen == s
        by_scenario[s] = {
            "rows": int(sel.sum()),
            "fraud": int(yt[sel].sum()),
            "mean_p": round(float(np.mean(p[sel])), 6),
            "share_p_ge_0.1": round(float(np.mean(p[sel] >= 0.1)), 4),
            "share_p_ge_0.5": round(float(np.mean(p[sel] >= 0.5)), 4),
        }
    gain = booster.get_score(importance_type="total_gain")
    total_gain = sum(gain.values()) or 1.0
    metrics = {
        "test_roc_auc": round(auc, 6),
        "test_pr_auc": round(pr_auc, 6),
        "test_log_loss": round(float(log_loss(yt, p.astype(np.float64), labels=[0, 1])), 6),
        "test_brier": round(float(brier_score_loss(yt, p)), 6),
        "test_mean_prediction": round(float(np.mean(p)), 6),
        "test_fraud_rate": round(float(np.mean(yt)), 6),
        "train_fraud_rate": round(float(np.mean(y[tr])), 6),
        "n_train": int(len(tr)),
        "n_test": int(len(te)),
        "split": {
            "train": [start.isoformat(), cut.isoformat()],
            "test": [cut.isoformat(), t.max().isoformat()],
            "by": "event_time",
        },
        "test_by_scenario": by_scenario,
        "feature_importance_gain_share": {k: round(v / total_gain, 4)
                                          for k, v in sorted(gain.items(), key=lambda kv: -kv[1])},
        "features_file": {"path": os.path.relpath(args.features, HERE), "sha256": sha256(args.features),
                          "rows": int(len(df))},
        "num_trees": N_ROUNDS,
        "xgboost_version": xgb.__version__,
        "params": params,
    }

    booster.save_model(os.path.join(HERE, "model.json"))
    with open(os.path.join(HERE, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")

    # Golden rows from the test split (deterministic picks; disjoint; in time order).
    rng = np.random.default_rng(SEED)
    taken = set()

    def pick(pool, k):
        pool = np.array([i for i in pool if i not in taken])
        chosen = rng.choice(pool, size=min(k, len(pool)), replace=False) if len(pool) else []
        taken.update(int(i) for i in chosen)
        return [int(i) for i in chosen]

    golden = pick(te, GOLDEN["random"]) + pick(te[yt == 1], GOLDEN["fraud"])
    if "amount_mean_30d" in X.columns:
        golden += pick(te[np.isnan(X["amount_mean_30d"].to_numpy()[te])], GOLDEN["no_history"])
    nulled = pick(te, GOLDEN["nulled"])
    golden = sorted(golden + nulled)
    rows = X.loc[golden].astype(object)
    nullable = [f["name"] for f in specs if f.get("nullable")]
    for i in nulled:
        for c in rng.choice(nullable, size=int(rng.integers(1, min(3, len(nullable)) + 1)), replace=False):
            rows.at[i, c] = None
    gframe = pd.DataFrame({f["name"]: (pd.Categorical(rows[f["name"]], categories=f["values"])
                                       if f["type"] == "category" else rows[f["name"]].astype(float))
                           for f in specs}, index=rows.index)
    expected = booster.predict(xgb.DMatrix(gframe, enable_categorical=True))
    with open(os.path.join(HERE, "golden.jsonl"), "w", encoding="utf-8") as fh:
        for r, i in enumerate(golden):
            row = {f["name"]: json_value(rows.at[i, f["name"]], f) for f in specs}
            fh.write(json.dumps({"row": row, "expected": [float(expected[r])]}, allow_nan=False) + "\n")

    # The splits' features with a class label, for `rtml profile` (reference.json).
    out_dir = os.path.join(HERE, "out")
    os.makedirs(out_dir, exist_ok=True)
    for name, idx in (("train.csv", tr), ("test.csv", te)):
        part = raw.iloc[idx][names].copy()
        for f in specs:  # defaults filled as rtml would; everything else as rtml wrote it
            if "default" in f:
                part[f["name"]] = part[f["name"]].fillna(f["default"])
            if f["type"] == "integer":  # 3, not 3.0, when the column has missing values
                part[f["name"]] = pd.to_numeric(part[f["name"]]).round().astype("Int64")
        part["label"] = np.where(y[idx] == 1, CLASSES[1], CLASSES[0])
        part.to_csv(os.path.join(out_dir, name), index=False, na_rep="")

    print("features from %s (%d rows)" % (os.path.relpath(args.features), len(df)))
    print("train %d rows %s .. %s (fraud rate %.4f); test %d rows .. %s (fraud rate %.4f)"
          % (len(tr), start.date(), (cut - pd.Timedelta(days=1)).date(), float(np.mean(y[tr])),
             len(te), t.max().date(), float(np.mean(yt))))
    print("test ROC AUC %.4f  PR AUC %.4f  log loss %.4f  Brier %.5f"
          % (auc, pr_auc, metrics["test_log_loss"], metrics["test_brier"]))
    print("mean p and share with p >= 0.5 per scenario (test):")
    for s, v in by_scenario.items():
        print("  %-18s %7d rows  mean p %.4f  p>=0.5 %.3f" % (s, v["rows"], v["mean_p"], v["share_p_ge_0.5"]))
    print("wrote model.json, golden.jsonl (%d rows), metrics.json in %s; out/train.csv, out/test.csv"
          % (len(golden), os.path.relpath(HERE)))


if __name__ == "__main__":
    main()
