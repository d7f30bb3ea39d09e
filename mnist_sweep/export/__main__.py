"""`python -m mnist_sweep.export RUN_DIR [--int8]`"""

from mnist_sweep.export.cli import main

raise SystemExit(main())
