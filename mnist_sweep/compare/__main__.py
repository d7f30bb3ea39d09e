"""`python -m mnist_sweep.compare RUNS...`"""

from mnist_sweep.compare.table import main

raise SystemExit(main())
