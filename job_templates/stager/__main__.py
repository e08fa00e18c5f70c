"""``python -m job_templates.stager in|out``."""

import sys

from job_templates.stager.main import main

sys.exit(main())
