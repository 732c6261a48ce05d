#!/usr/bin/python3
"""Train the credit example's two challenger bundles: credit v2 (a retrain) and v3 (broken).

Run from the repository root with Debian's Python (xgboost 1.7.4, pandas, scikit-learn):

    /usr/bin/python3 examples/candidates/train.py

Deterministic like examples/credit/train.py, whose data, split, features, encoding and
policy both reuse (the policy file is copied unchanged: only the model changes).

* ``credit/v2``: retrained with another seed (11) and monotone constraints: more income
  never raises P(bad), a higher interest rate never lowers it (the directional gates prove
  both on the trees). Picked among 6 seed/round combinations by test AUC (0.7500 vs v1's
  0.7451: equal within noise; the replay report's DeLong interval says so).
* ``credit/v3``: the same training as v1 except that the training frame had the *values*
  of int_rate and annual_inc swapped (the column names kept), the silent bug of a feature
  pipeline that reorders two columns. The bundle is self-consistent (its golden
  outputs are its own predictions, so `rtml check` passes): only behaviour tests and replay
  can catch it, before it decides anything.

Each folder is a complete bundle: rtml.yaml (with the `gates:` it must pass, from
GATES below), model.json, policy.yaml, golden.jsonl, metrics.json.
"""
import json
import os
import shutil
import sys

import numpy as np
import xgboost as xgb
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
V1 = os.path.join(HERE, "..", "credit")
sys.path.insert(0, V1)
import train as v1  # noqa: E402  (examples/credit/train.py: data, specs, frames)

SWAPPED = ("int_rate", "annual_inc")


def gates_yaml():
    with open(os.path.join(HERE, "gates.yaml"), encoding="utf-8") as fh:
        return fh.read()


def main():
    df = v1.load()
    specs = v1.feature_specs(df)
    names = [f["name"] for f in specs]
    y = (df[v1.TARGET] == "bad").astype(int).to_numpy()
    idx_train, idx_test = train_test_split(np.arange(len(df)), test_size=v1.TEST_SIZE,
                                           stratify=y, random_state=v1.SEED)
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    train, test = df.iloc[idx_train], df.iloc[idx_test]
    base = float(np.mean(y[idx_train]))
    # More income never raises P(bad), a higher interest rate never lowers it.
    direction = {"annual_inc": "-1", "int_rate": "1"}
    monotone = "(" + ",".join(direction.get(n, "0") for n in names) + ")"
    versions = {
        "2": dict(params=dict(v1.PARAMS, seed=11, base_score=base, monotone_constraints=monotone),
                  rounds=200, swap=False,
                  what="retrained: seed 11, monotone in annual_inc (decreasing) and int_rate (increasing)"),
        "3": dict(params=dict(v1.PARAMS, base_score=base), rounds=v1.N_ROUNDS, swap=True,
                  what="BROKEN on purpose: int_rate and annual_inc swapped in training"),
    }
    dtest = xgb.DMatrix(v1.model_frame(test, specs), label=y[idx_test], enable_categorical=True)
    for version, spec in versions.items():
        out = os.path.join(HERE, "credit", "v" + version)
        os.makedirs(out, exist_ok=True)
        frame = v1.model_frame(train, specs)
        if spec["swap"]:
            a, b = SWAPPED
            frame[a], frame[b] = frame[b].copy(), frame[a].copy()
        dtrain = xgb.DMatrix(frame, label=y[idx_train], enable_categorical=True)
        booster = xgb.train(spec["params"], dtrain, spec["rounds"])
        p_test = booster.predict(dtest)
        auc = float(roc_auc_score(y[idx_test], p_test))
        booster.save_model(os.path.join(out, "model.json"))
        metrics = {
            "test_roc_auc": round(auc, 6),
            "test_log_loss": round(float(log_loss(y[idx_test], p_test.astype(np.float64))), 6),
            "test_brier": round(float(brier_score_loss(y[idx_test], p_test)), 6),
            "num_trees": spec["rounds"],
            "xgboost_version": xgb.__version__,
            "what": spec["what"],
            "params": {k: v for k, v in spec["params"].items() if k != "eval_metric"},
        }
        with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2)
            fh.write("\n")
        shutil.copyfile(os.path.join(V1, "policy.yaml"), os.path.join(out, "policy.yaml"))
        # The manifest: v1's features and outputs (written by v1's own function), this version,
        # no monitoring reference yet, and the gates it must pass.
        v1.write_yaml(os.path.join(out, "rtml.yaml"), specs, auc)
        with open(os.path.join(out, "rtml.yaml"), encoding="utf-8") as fh:
            text = fh.read()
        text = text.replace("# written by examples/credit/train.py", "# written by examples/candidates/train.py")
        text = text.replace('version: "1"', 'version: "%s"' % version)
        text = text.replace("%d trees" % v1.N_ROUNDS, "%d trees (%s)" % (spec["rounds"], spec["what"]))
        text = text.split("monitoring:")[0] + gates_yaml()
        with open(os.path.join(out, "rtml.yaml"), "w", encoding="utf-8") as fh:
            fh.write(text)
        # Golden rows: the same rows as v1's golden file, this model's own predictions.
        golden_rows = [json.loads(line)["row"] for line in open(os.path.join(V1, "golden.jsonl"), encoding="utf-8")]
        import pandas as pd
        frame = v1.model_frame(pd.DataFrame(golden_rows, columns=names), specs)
        expected = booster.predict(xgb.DMatrix(frame, enable_categorical=True))
        with open(os.path.join(out, "golden.jsonl"), "w", encoding="utf-8") as fh:
            for row, p in zip(golden_rows, expected):
                fh.write(json.dumps({"row": row, "expected": [float(p)]}, allow_nan=False) + "\n")
        print("credit v%s: test ROC AUC %.4f (%s)" % (version, auc, spec["what"]))


if __name__ == "__main__":
    main()
