"""Write the weight-file layout goldens of ``tests/models/test_weight_file_layout.py``.

The goldens are the layout of the files earlier releases wrote, so regenerate them from such a
release, never from the code under test::

    git worktree add /tmp/release <commit>
    PYTHONPATH=/tmp/release python tests/models/golden/make_weight_paths.py

The committed files were written at ``b9a3132^`` (the last commit whose batch normalization was
Keras' own class).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[3]))  # for ``tests`` itself

from tests.models.test_weight_file_layout import MODELS, golden_path, weight_paths

if __name__ == "__main__":
    for name, build in MODELS.items():
        golden_path(name).write_text("\n".join(weight_paths(build())) + "\n")
        print("wrote", golden_path(name))
