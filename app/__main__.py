"""``python -m app`` runs the ``facerec`` command line."""

import sys

from app.cli import main

sys.exit(main())
