"""requirements-tpu.txt installs TensorFlow's TPU build and nothing that pulls the CPU build over it.

`pip install tensorflow-tpu` and then anything that requires `tensorflow` (requirements.txt does)
replaces the TPU build's files with the CPU build's: TensorFlow then finds no TPU. Offline and
fast: it reads the file and the metadata of the packages installed here; it imports no TensorFlow.
"""
import importlib.metadata
import os

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_BUILDS = {"tensorflow-tpu", "tf-nightly-tpu"}
CPU_BUILDS = {"tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu"}  # each overwrites the TPU build


def requirement_lines(path):
    """The file's lines without comments and blanks: 'numpy  # why' -> 'numpy'."""
    with open(path, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [line for line in lines if line]


LINES = requirement_lines(os.path.join(ROOT, "requirements-tpu.txt"))


def tpu_requirements():
    """The packages the file names (its option lines, such as -r, are the next test's concern)."""
    return [Requirement(line) for line in LINES if not line.startswith("-")]


def test_no_other_requirements_file():
    # -r/-c would bring in requirements.txt's `tensorflow`, unseen by the tests below
    options = [line for line in LINES if line.startswith("-")]
    assert options == [], f"requirements-tpu.txt must list packages only, found {options}"


def test_names_a_pinned_tpu_build_and_no_cpu_build():
    requirements = tpu_requirements()
    names = {canonicalize_name(r.name) for r in requirements}
    assert not names & CPU_BUILDS, f"a CPU build of TensorFlow is listed: {names & CPU_BUILDS}"
    tpu = [r for r in requirements if canonicalize_name(r.name) in TPU_BUILDS]
    assert len(tpu) == 1, f"expected one TPU build of TensorFlow, found {[str(r) for r in tpu]}"
    # exactly one '==' with a full version: a TPU build works only with the libtpu it pins
    pins = [(s.operator, s.version) for s in tpu[0].specifier]
    assert len(pins) == 1 and pins[0][0] == "==" and "*" not in pins[0][1], f"not pinned with ==: {tpu[0]}"


def declared_dependencies(name, extras=()):
    """What `name` (installed here) requires, with these extras: 'keras' -> [('absl-py', ()), ...]."""
    found = []
    for text in importlib.metadata.requires(name) or []:
        requirement = Requirement(text)
        # subtle: 'tensorflow; extra == "tf"' is installed only when the tf extra is asked for
        wanted = requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras or ("",))
        if wanted:
            found.append((canonicalize_name(requirement.name), tuple(requirement.extras)))
    return found


def test_other_packages_do_not_pull_a_cpu_build():
    # Walks the dependencies (transitively) of every non-TensorFlow package in the file that is
    # installed in this environment; packages not installed here cannot be inspected offline.
    todo = [(canonicalize_name(r.name), tuple(r.extras)) for r in tpu_requirements()
            if canonicalize_name(r.name) not in TPU_BUILDS]
    seen, inspected, offenders = set(), [], []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dependencies = declared_dependencies(name, extras)
        except importlib.metadata.PackageNotFoundError:
            continue
        inspected.append(name)
        offenders += [f"{name} -> {dep}" for dep, _ in dependencies if dep in CPU_BUILDS]
        todo += dependencies
    assert inspected, "no package besides TensorFlow is installed here to check"
    assert offenders == [], f"these pull a CPU build of TensorFlow over the TPU build: {offenders}"
