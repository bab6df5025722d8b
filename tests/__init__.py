from pathlib import Path

# The repository's root: the stack files, the workflows, the README.
REPO_ROOT = Path(__file__).resolve().parent.parent
