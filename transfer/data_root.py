"""Where a task's dataset lies under the folder given on the command line: one rule for every layout."""
from dataclasses import dataclass
from pathlib import Path

from mae_core.errors import MaeBenchError


@dataclass(frozen=True)
class DataLayout:
    """A dataset layout: the root is the first of DATA/<under>..., DATA that holds every `markers` folder (the
    synthetic set's root names its subfolders in `under`). A root beside a synth.json (in it or up to two
    folders above, where the generator writes it) is named `synthetic-<name>`."""

    name: str
    markers: tuple[str, ...]
    under: tuple[str, ...]
    missing: str | None = None  # the error when no candidate holds the markers ({data}); None: DATA as given

    def resolve(self, data: str | Path) -> tuple[Path, str]:
        """(the dataset root, its name for the result record)."""
        data = Path(data)
        for root in (*(data / sub for sub in self.under), data):
            if all((root / m).is_dir() for m in self.markers):
                break
        else:
            if self.missing is not None:
                raise MaeBenchError(self.missing.format(data=data))
            root = data  # the dataset's loader says what is missing
        synthetic = any((p / "synth.json").exists() for p in (root, root.parent, root.parent.parent))
        return root, f"synthetic-{self.name}" if synthetic else self.name
