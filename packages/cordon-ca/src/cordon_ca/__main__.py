import sys

from cordon_ca.cli import main

sys.exit(main())
