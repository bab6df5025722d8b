import sys

from offline_render.cli import main

sys.exit(main())
