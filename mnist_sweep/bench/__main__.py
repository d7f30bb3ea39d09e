"""`python -m mnist_sweep.bench [--mode] [overrides]`"""

from mnist_sweep.bench.speed import main

raise SystemExit(main())
