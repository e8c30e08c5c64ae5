"""Private helpers of :mod:`eventwire_devkit.kafka` plus the Maven pom and log4j2 config.

Nothing here is public API; import from :mod:`eventwire_devkit.kafka` instead.
"""
