import sys
from pathlib import Path

# With --import-mode=importlib test folders are not on sys.path; the shared builders live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
