import sys

from app.faces.cli import main

sys.exit(main())
