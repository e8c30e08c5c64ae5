"""Package data of :mod:`eventwire_devkit.registry`: the Maven project that builds the registry."""
