import sys

from cordon_doctor.cli import main

sys.exit(main())
