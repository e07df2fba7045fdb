"""The ``prunekit`` command line (entry point :func:`prunekit.cli.main.main`)."""
