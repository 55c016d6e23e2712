import sys

from cordon_proxy.cli import main

sys.exit(main())
