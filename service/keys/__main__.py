import sys

from service.keys.cli import main

sys.exit(main())
