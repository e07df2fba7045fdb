"""``python -m prunekit`` (and ``torchrun -m prunekit``): the command line."""

from prunekit.cli.main import main

raise SystemExit(main())
