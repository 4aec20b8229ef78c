"""DROP: run any stdin/stdout program as an elastic pool of workers, wired into flows."""

import logging

__version__ = "0.1.0"

logging.getLogger("drop").addHandler(logging.NullHandler())
