"""Private helpers of :mod:`eventwire.testing.kafka` plus the Maven pom and log4j2 config.

Nothing here is public API; import from :mod:`eventwire.testing.kafka` instead.
"""
