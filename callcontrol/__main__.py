import sys

from callcontrol.cli import main

sys.exit(main())
