"""The ``clickgs`` command line: thin layers over the project's modules, one subcommand each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import tyro
from typing_extensions import Annotated

from clickgs_ns.synth import SynthConfig


@dataclass
class Synth:
    """Generate the procedural test scene: a nerfstudio dataset with SAM-like masks, a 3DGS .ply and ground truth."""

    out_dir: tyro.conf.Positional[Path]
    """Folder to write the dataset into."""
    scene: SynthConfig = field(default_factory=SynthConfig)

    def main(self) -> None:
        from clickgs_ns.synth import generate_scene
        from nerfstudio.utils.rich_utils import CONSOLE

        scene = generate_scene(self.scene, self.out_dir)
        CONSOLE.print(f"[bold green]Wrote the synthetic scene to {self.out_dir}[/]: {scene}")


Commands = Union[
    Annotated[Synth, tyro.conf.subcommand(name="synth")],
]


def entrypoint() -> None:
    """Entry point of the ``clickgs`` console script."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(Commands).main()


if __name__ == "__main__":
    entrypoint()
