"""`skylark fuzz`: random valid networks through every framework, divergences shrunk to repros.

    plan = generate(seed=0, index=7)          # a JSON-able case: blocks, input, dtype, mode, loss
    layers = build_layers(plan)               # the model config skylark check --model reads
    verdict = Oracle(["torch"]).run(plan)     # pass / fail / error / inexpressible / known
    small = shrink(plan, verdict, oracle)     # the smallest plan that still fails the same way

Modules, one concept each: `plan` (the case and its model config), `generate` (a seeded random
plan per case index), `oracle` (a case through skylark check's machinery, plus finite
differences), `shrink`, `known` (the known-deviation table), `campaign` (local worker
processes), `cluster` (the same campaign on a Dask cluster), `repro` (the saved JSON and its
one-line command).
"""
