"""tasks.training.tf1, the one import of TensorFlow: compat.v1 in graph mode, quiet, and without Keras."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

PROBE = """
import json, os, sys
from tasks.training.tf1 import tf
import tensorflow
variable = tf.Variable(1.0)
print(json.dumps({
    "log_level": os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
    "eager": tf.executing_eagerly(),
    "ref_variable": type(variable).__name__,
    "keras_imported": sorted(name for name in sys.modules if name.split(".")[0] in ("keras", "tf_keras")),
    "none_on_path": any(folder is None for folder in tensorflow.__path__),
    "is_compat_v1": tf is tensorflow.compat.v1,
}))
"""


def _probe(env_overrides: dict[str, str | None]) -> tuple[dict, str]:
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update({key: value for key, value in env_overrides.items() if value is not None})
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_tf1_gives_graph_mode_compat_v1_quietly_and_without_keras():
    found, stderr = _probe({})
    assert found["log_level"] == "2"  # set before the import when the caller did not
    assert found["eager"] is False and found["is_compat_v1"]
    assert found["ref_variable"] == "RefVariable"  # v2 behaviour off: the optimizers' _apply_dense runs
    assert found["keras_imported"] == []
    assert not found["none_on_path"]
    # disable_v2_behavior's own deprecation notice and TF's Python warnings are silenced.
    assert "WARNING:tensorflow" not in stderr and "deprecated" not in stderr


def test_a_log_level_set_by_the_caller_is_kept():
    found, _ = _probe({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert found["log_level"] == "0"


def test_keras_still_loads_lazily_when_asked_for():
    code = (
        "from tasks.training.tf1 import tf; import tensorflow, sys; "
        "tensorflow.keras.layers.Dense; print('keras' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


def test_no_module_but_tf1_imports_tensorflow():
    modules = sorted(path for path in (REPO_ROOT / "tasks").rglob("*.py") if path.name != "tf1.py")
    assert len(modules) > 20
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in modules
        if re.search(r"^\s*(import tensorflow|from tensorflow)", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert offenders == []
    graph_modules = ["models.py", "msvag.py", "graph.py"]
    for name in graph_modules:
        assert "from tasks.training.tf1 import tf" in (REPO_ROOT / "tasks" / "training" / name).read_text()


def test_native_start_up_notices_are_dropped_and_other_lines_kept():
    _, stderr = _probe({})
    for notice in ("absl::InitializeLog", "Could not find cuda drivers", "cuInit", "oneDNN custom operations"):
        assert notice not in stderr
    code = (
        "import os\n"
        "from tasks.training.tf1 import without_start_up_noise\n"
        "with without_start_up_noise():\n"
        "    os.write(2, b'W0000 a warning that matters\\nE0000 failed call to cuInit: x\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "W0000 a warning that matters\n"
