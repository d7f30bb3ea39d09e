"""`python -m mnist_sweep.bench [--mode] [overrides]`"""

from mnist_sweep.bench.cli import main

raise SystemExit(main())
