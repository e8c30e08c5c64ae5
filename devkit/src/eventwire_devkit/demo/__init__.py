"""The guide's order domain, its event messages and translator, and the demo job.

These are example code shipped with the devkit so that ``eventwire demo``, the
benchmarks and the examples publish the same events. Your own domain lives in
your own code.
"""
