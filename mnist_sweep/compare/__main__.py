"""`python -m mnist_sweep.compare RUNS...`"""

from mnist_sweep.compare.cli import main

raise SystemExit(main())
