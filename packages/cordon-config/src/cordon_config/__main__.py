import sys

from cordon_config.cli import main

sys.exit(main())
