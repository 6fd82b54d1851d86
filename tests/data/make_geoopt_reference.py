"""Makes tests/data/geoopt_optim.npz: geoopt's RiemannianSGD / RiemannianAdam trajectories on
fixed numbers, the reference for tests/test_hyperbolic_optim.py.

Run with the reference environment (torch + geoopt; never a jaxemb dependency):

    /root/refenv/bin/python tests/data/make_geoopt_reference.py

Made with geoopt 0.5.1, torch 2.13.0+cpu, numpy (see the `versions` entry), float64.
Each case: points x0 [N, D] inside the Poincaré ball of curvature -c, a fixed sequence of
Euclidean gradients [T, N, D] (set as `.grad` before each `step()`), and the points after
each step [T, N, D].
"""

import json
import pathlib

import geoopt
import numpy as np
import torch

CASES = {
    "rsgd": dict(opt="sgd", c=1.0, lr=0.05),
    "rsgd_momentum": dict(opt="sgd", c=0.5, lr=0.05, momentum=0.9, dampening=0.1,
                          weight_decay=0.01),
    "rsgd_nesterov": dict(opt="sgd", c=1.0, lr=0.03, momentum=0.8, nesterov=True),
    "radam": dict(opt="adam", c=1.0, lr=0.05),
    "radam_amsgrad": dict(opt="adam", c=2.0, lr=0.02, amsgrad=True, weight_decay=0.01,
                          betas=(0.8, 0.99)),
}
N, D, T = 6, 3, 6


def main():
  rng = np.random.default_rng(11)
  out = {"versions": json.dumps({"geoopt": geoopt.__version__, "torch": torch.__version__,
                                 "numpy": np.__version__})}
  for name, case in CASES.items():
    c = case["c"]
    v = rng.normal(size=(N, D))
    x0 = v / np.linalg.norm(v, axis=-1, keepdims=True) * rng.uniform(0.1, 0.85, (N, 1))
    x0 /= np.sqrt(c)
    grads = rng.normal(size=(T, N, D)) * 0.7
    # A float64 curvature tensor: from a Python float geoopt would keep it in float32.
    ball = geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))
    point = geoopt.ManifoldParameter(torch.tensor(x0, dtype=torch.float64), manifold=ball)
    kwargs = {k: v for k, v in case.items() if k not in ("opt", "c")}
    opt = (geoopt.optim.RiemannianSGD if case["opt"] == "sgd"
           else geoopt.optim.RiemannianAdam)([point], **kwargs)
    traj = []
    for t in range(T):
      point.grad = torch.tensor(grads[t], dtype=torch.float64)
      opt.step()
      traj.append(point.detach().numpy().copy())
    out[f"{name}/x0"] = x0
    out[f"{name}/grads"] = grads
    out[f"{name}/traj"] = np.stack(traj)
    out[f"{name}/case"] = json.dumps(case)
  path = pathlib.Path(__file__).with_name("geoopt_optim.npz")
  np.savez(path, **out)
  print("wrote", path, sorted(out))


if __name__ == "__main__":
  main()
