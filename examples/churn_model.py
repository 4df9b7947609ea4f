"""A small, real churn model and the synthetic world it lives in.

The model is a logistic regression fitted at start (Newton's method with numpy) on customers drawn
from the *usual* world, where churn follows contract type, tenure, price and support calls. The
world can *drift*, in two ways. Newcomers can come on whom the model is unsure (`sample_newcomer`)
while churn still follows the usual world: the model's accuracy falls, and its calibrated scores
say so before any label. Or a competitor undercuts expensive plans, so churn follows the monthly
price almost alone and the customers who come change with it (newer, month-to-month, on cheaper
plans, calling support more): the model stays confident and is wrong, which only labels show.
Either way the inputs move away from the training set's before any label says the model is
wrong. That is what `truthloop demo` makes visible.

Served over HTTP (aiohttp) with two JSON shapes:

- single: `{"features": {...}}` → `{"prediction": 0|1, "score": p}`
- batch (KServe v1): `{"instances": [{...}, ...]}` → `{"predictions": [0|1, ...]}`

Run it alone: `python -m truthloop.examples.churn_model --port 9000`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from aiohttp import web

CONTRACTS = ("month-to-month", "one-year", "two-year")
NUMERIC = ("tenure", "monthly_charges", "support_calls")


def sample_customer(
    rng: np.random.Generator, *, drifted: bool = False
) -> dict[str, float | int | str]:
    """One customer's features, as a client would send them. After the drift the newcomers are
    the competitor's leftovers: short tenure, mostly month-to-month, on cheaper plans, calling
    support more; every value stays within the usual world's ranges (a shift, not outliers)."""
    if drifted:
        return {
            "tenure": int(rng.integers(0, 18)),
            "monthly_charges": round(float(rng.uniform(25.0, 100.0)), 2),
            "contract": str(rng.choice(CONTRACTS, p=(0.85, 0.10, 0.05))),
            "support_calls": min(int(rng.poisson(3.0)), 7),
        }
    return {
        "tenure": int(rng.integers(0, 73)),
        "monthly_charges": round(float(rng.uniform(20.0, 120.0)), 2),
        "contract": str(rng.choice(CONTRACTS, p=(0.55, 0.25, 0.20))),
        "support_calls": int(rng.poisson(1.5)),
    }


def sample_newcomer(rng: np.random.Generator) -> dict[str, float | int | str]:
    """A customer of the first drift: a newcomer on the fence, month-to-month, one or two years
    in, with one or two support calls, whose usual odds of churning are near even. The model is
    unsure of them (its scores near 0.5), and rightly: their churn still follows the usual world,
    so the model's calibrated scores say how often it will be wrong before any label does."""
    calls = int(rng.integers(1, 3))
    return {
        "tenure": 21 + 6 * (calls - 1) + int(rng.integers(-3, 4)),
        "monthly_charges": round(float(rng.uniform(45.0, 95.0)), 2),
        "contract": "month-to-month",
        "support_calls": calls,
    }


def churn_probability(customer: Mapping[str, object], *, drifted: bool) -> float:
    """The world's truth: how likely this customer is to churn, usually or after the drift."""
    charges = float(customer["monthly_charges"])  # type: ignore[arg-type]
    if drifted:
        logit = 0.25 * (charges - 75.0)
    else:
        m2m = 1.0 if customer["contract"] == "month-to-month" else 0.0
        tenure = float(customer["tenure"])  # type: ignore[arg-type]
        calls = float(customer["support_calls"])  # type: ignore[arg-type]
        logit = 3.0 * (1.6 * m2m - 0.07 * tenure + 0.015 * (charges - 70.0) + 0.45 * calls - 0.6)
    return 1.0 / (1.0 + math.exp(-logit))


def label(customer: Mapping[str, object], rng: np.random.Generator, *, drifted: bool) -> int:
    """Whether this customer did churn: the actual that arrives later."""
    return int(rng.random() < churn_probability(customer, drifted=drifted))


def design_row(customer: Mapping[str, object]) -> list[float]:
    """The model's inputs: an intercept and the numeric features."""
    return [
        1.0,
        float(customer["tenure"]) / 72.0,  # type: ignore[arg-type]
        (float(customer["monthly_charges"]) - 70.0) / 50.0,  # type: ignore[arg-type]
        1.0 if customer["contract"] == "month-to-month" else 0.0,
        float(customer["support_calls"]) / 5.0,  # type: ignore[arg-type]
    ]


@dataclass(frozen=True, slots=True)
class ChurnModel:
    """Logistic regression weights over `design_row`; `threshold` turns a score into a class."""

    weights: tuple[float, ...]
    threshold: float = 0.5

    def score(self, customer: Mapping[str, object]) -> float:
        z = sum(w * x for w, x in zip(self.weights, design_row(customer), strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def predict(self, customer: Mapping[str, object]) -> tuple[int, float]:
        p = self.score(customer)
        return int(p >= self.threshold), p


TRAINING_SEED = 7
TRAINING_SIZE = 4000


def training_set(
    seed: int = TRAINING_SEED, n: int = TRAINING_SIZE
) -> tuple[list[dict[str, float | int | str]], list[int]]:
    """`n` customers of the usual world and whether each churned: what `fit` learns from, and
    the reference the demo measures drift against."""
    rng = np.random.default_rng(seed)
    customers = [sample_customer(rng) for _ in range(n)]
    return customers, [label(c, rng, drifted=False) for c in customers]


DESIGN = ("intercept", "tenure", "monthly_charges", "contract", "support_calls")
"""What each of `design_row`'s columns holds."""


def fit(
    seed: int = TRAINING_SEED,
    n: int = TRAINING_SIZE,
    iterations: int = 25,
    without: tuple[str, ...] = (),
) -> ChurnModel:
    """Fit on `n` customers of the usual world by Newton's method (IRLS) with a small ridge;
    `without` names features the model leaves out (their weights stay 0)."""
    customers, labels = training_set(seed, n)
    x = np.array([design_row(c) for c in customers])
    x[:, [DESIGN.index(name) for name in without]] = 0.0
    y = np.array(labels, dtype=float)
    w = np.zeros(x.shape[1])
    ridge = 1e-3 * np.eye(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + ridge @ w
        hessian = (x * (p * (1.0 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return ChurnModel(weights=tuple(float(v) for v in w))


class BadRequest(ValueError):
    """A request the model cannot score; answered 400 with the reason."""


def _customer(obj: object, where: str) -> Mapping[str, object]:
    if not isinstance(obj, dict):
        raise BadRequest(f"{where}: expected an object of features")
    missing = [k for k in (*NUMERIC, "contract") if k not in obj]
    if missing:
        raise BadRequest(f"{where}: missing {', '.join(missing)}")
    if not all(isinstance(obj[k], int | float) and not isinstance(obj[k], bool) for k in NUMERIC):
        raise BadRequest(f"{where}: tenure, monthly_charges and support_calls must be numbers")
    return obj


def answer(model: ChurnModel, body: object) -> dict[str, object]:
    """The model's JSON answer to a single or a batch request."""
    if isinstance(body, dict) and "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise BadRequest("instances: expected a list")
        return {
            "predictions": [
                model.predict(_customer(row, f"instances[{i}]"))[0] for i, row in enumerate(rows)
            ]
        }
    if isinstance(body, dict) and "features" in body:
        prediction, score = model.predict(_customer(body["features"], "features"))
        return {"prediction": prediction, "score": round(score, 6)}
    raise BadRequest('expected {"features": {...}} or {"instances": [...]}')


def make_app(model: ChurnModel) -> web.Application:
    async def predict(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            return web.json_response(answer(model, body))
        except (ValueError, BadRequest) as e:
            return web.json_response({"error": str(e)}, status=400)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/predict", predict)
    app.router.add_post("/v1/models/churn:predict", predict)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    web.run_app(make_app(fit(args.seed)), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
