"""`python -m tasks.training.kernels build [--force]`: compile the op library (see tasks.training.kernels.build)."""

import sys

from tasks.training.kernels.build import main

sys.exit(main())
