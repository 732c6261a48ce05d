"""The FastAPI + XGBoost peer of `npm run bench -- --only http`: the credit decision as a data
scientist would serve it in Python, for the ">= 10x FastAPI" target of issue 14.

    /usr/bin/python3 bench/fastapi_peer.py BUNDLE_DIR PORT

(Debian's python3-fastapi, python3-uvicorn, python3-xgboost, python3-yaml.) It reads the same
bundle rtml serves: the manifest's features (types, ranges, category values) become a pydantic
model, so a request is validated as rtml validates it (422 for a bad field); categories are
encoded as rtml's `encoding: ordinal` encodes them (the index in the declared values, which is
the category code the model's native categorical splits were trained on), numbers as float32,
a missing nullable value as NaN; the model is the bundle's XGBoost JSON, loaded by xgboost and
scored with `inplace_predict` on one thread; the decision is the policy's bands (`below`
thresholds), so score and band agree with rtml's. It does less than rtml: no rules, reasons,
decision log or monitors.

POST /v1/services/<name>/decisions takes the body rtml takes (an optional `id` included) and
answers {"id", "decision", "score"}; GET /health answers 200 once the model is loaded. One
uvicorn worker on 127.0.0.1; uvicorn picks uvloop and httptools when they are installed
(Debian's python3-uvloop, python3-httptools), asyncio and h11 otherwise: it says which on stderr.
"""
import math
import os
import sys
import uuid
from typing import Literal, Optional

import numpy as np
import uvicorn
import xgboost as xgb
import yaml
from fastapi import FastAPI
from pydantic import Extra, Field, create_model  # pydantic 1.10 (Debian bookworm)


def request_model(features):
    """A pydantic model of the manifest's features (extra fields such as `id` allowed)."""
    fields = {"id": (Optional[str], None)}
    for f in features:
        bounds = {}
        if "min" in f:
            bounds["ge"] = f["min"]
        if "max" in f:
            bounds["le"] = f["max"]
        if f["type"] == "category":
            kind = Literal[tuple(f["values"])]
        elif f["type"] == "integer":
            kind = int
        else:
            kind = float
        if f.get("nullable"):
            fields[f["name"]] = (Optional[kind], Field(None, **bounds))
        else:
            fields[f["name"]] = (kind, Field(..., **bounds))
    class Config:
        extra = Extra.allow

    return create_model("DecisionRequest", __config__=Config, **fields)


def main():
    bundle, port = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(bundle, "rtml.yaml")) as fh:
        manifest = yaml.safe_load(fh)
    with open(os.path.join(bundle, manifest.get("policy", "policy.yaml"))) as fh:
        policy = yaml.safe_load(fh)
    features = manifest["features"]
    names = [f["name"] for f in features]
    codes = {f["name"]: {v: float(i) for i, v in enumerate(f["values"])} for f in features if f["type"] == "category"}
    bands = [(b.get("below", math.inf), b["action"]) for b in policy["bands"]]

    booster = xgb.Booster(model_file=os.path.join(bundle, manifest["model"]["path"]))
    booster.set_param({"nthread": 1})
    if booster.num_features() != len(names):
        sys.exit("the model takes %d features, the manifest declares %d" % (booster.num_features(), len(names)))

    Request = request_model(features)
    app = FastAPI()
    service = manifest["name"]

    @app.get("/health")
    async def health():
        return {"ready": True}

    @app.post("/v1/services/%s/decisions" % service)
    async def decide(body: Request):
        row = np.empty((1, len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            value = getattr(body, name)
            if value is None:
                row[0, j] = np.nan
            elif name in codes:
                row[0, j] = codes[name][value]
            else:
                row[0, j] = value
        score = float(booster.inplace_predict(row)[0])
        decision = next(action for below, action in bands if score < below)
        return {"id": body.id or str(uuid.uuid4()), "decision": decision, "score": score}

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    sys.stderr.write("fastapi peer: xgboost %s, uvicorn %s, loop %s, http %s, port %d\n" % (xgb.__version__, uvicorn.__version__, loop, http, port))
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, loop=loop, http=http, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
