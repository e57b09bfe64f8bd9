"""The wheel carries the sample cycle `reminder init` copies (config, templates, export).

They stay at the top of the checkout, where staff and the tests use them; the build
copies them into the package as `reminder/sample`.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SAMPLE = ("config.toml", "registrants.csv", "suppression.txt")


class BuildWithSample(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "reminder" / "sample"
        target.mkdir(parents=True, exist_ok=True)
        for name in SAMPLE:
            self.copy_file(str(ROOT / name), str(target / name))
        self.copy_tree(str(ROOT / "templates"), str(target / "templates"))


setup(cmdclass={"build_py": BuildWithSample})
