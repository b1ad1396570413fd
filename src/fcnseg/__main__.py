"""`python -m fcnseg ...`, which is also what `torchrun -m fcnseg` runs."""

import sys

from fcnseg.cli import main

sys.exit(main())
