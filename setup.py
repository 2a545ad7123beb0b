"""Build glue: ship ``molpeg_chemprop_hook.pth`` at the root of site-packages.

Everything else is declared in ``pyproject.toml``. The ``.pth`` file makes
``chemprop train --plugin molpeg`` work on the user's own ``chemprop`` command (see
``adapters/molpeg_chemprop/autohook.py``); it must be installed by a regular wheel and by an
editable (PEP 660) install alike.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = Path(__file__).parent / "adapters" / "molpeg_chemprop_hook.pth"


class BuildPyWithPth(build_py):
    """``build_py`` that also copies the start-up ``.pth`` file into the build root."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH.name)]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = dict(super().get_output_mapping())
        mapping[str(Path(self.build_lib) / PTH.name)] = str(PTH)
        return mapping


class _StrategyWithPth:
    """Wraps setuptools' editable strategy: also write the ``.pth`` into the editable wheel."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __enter__(self) -> "_StrategyWithPth":
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> object:
        return self.inner.__exit__(*exc)

    def __call__(self, wheel, files, mapping) -> None:
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH.name, PTH.read_bytes())


class EditableWheelWithPth(editable_wheel):
    """PEP 660 editable install that also installs the start-up ``.pth`` file.

    Editable wheels only contain setuptools' own path/finder ``.pth``; build outputs that are
    not package files are dropped, so the hook file is added to the wheel here.
    """

    def _select_strategy(self, name, tag, build_lib):
        return _StrategyWithPth(super()._select_strategy(name, tag, build_lib))


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
