"""`python -m mnist_sweep.evaluate RUN_DIR [--images DIR]`"""

from mnist_sweep.evaluate.cli import main

raise SystemExit(main())
