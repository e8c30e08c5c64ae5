"""eventwire's benchmark harness: contenders, runner, reports and a CPU microbenchmark.

Run it with ``eventwire bench`` (or ``python -m bench``) from a source checkout.
Every contender runs in its own subprocess (:mod:`bench.worker`) against one local
real Kafka cluster; results are compared only as ratios within one run.
"""
