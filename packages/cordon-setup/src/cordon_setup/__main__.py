import sys

from cordon_setup.cli import main

sys.exit(main())
