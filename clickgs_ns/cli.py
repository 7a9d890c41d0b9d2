"""The ``clickgs`` command line: thin layers over the project's modules, one subcommand each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import tyro
from typing_extensions import Annotated

from clickgs_ns.sam_masks import Masks
from clickgs_ns.synth import SynthConfig


@dataclass
class Synth:
    """Generate the procedural test scene: a nerfstudio dataset with SAM-like masks, a 3DGS .ply and ground truth."""

    out_dir: tyro.conf.Positional[Path]
    """Folder to write the dataset into."""
    scene: Annotated[SynthConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SynthConfig)

    def main(self) -> None:
        from clickgs_ns.synth import generate_scene
        from nerfstudio.utils.rich_utils import CONSOLE

        scene = generate_scene(self.scene, self.out_dir)
        CONSOLE.print(f"[bold green]Wrote the synthetic scene to {self.out_dir}[/]: {scene}")


@dataclass
class RenderFeatures:
    """Render every training view of a run as [RGB | coarse-feature PCA | fine-feature PCA] PNGs."""

    load_config: Path
    """config.yml of a click-gaussian run."""
    output_dir: Path = Path("feature_maps")
    """Folder for the PNGs (one per training view)."""

    def main(self) -> None:
        from clickgs_ns.feature_maps import fit_pca_basis, pca_colors, save_png, side_by_side
        from clickgs_ns.scene import load
        from nerfstudio.utils.rich_utils import CONSOLE

        scene = load(self.load_config)
        features = scene.model.features.detach()
        coarse_basis = fit_pca_basis(features[:, : scene.model.config.coarse_dim])
        fine_basis = fit_pca_basis(features)
        for index, name in enumerate(scene.image_names):
            outputs = scene.render(index)
            alpha = outputs["accumulation"]
            picture = side_by_side([
                outputs["rgb"],
                pca_colors(outputs["coarse_features"], coarse_basis, alpha),
                pca_colors(outputs["fine_features"], fine_basis, alpha),
            ])
            save_png(picture, self.output_dir / (Path(name).stem + ".png"))
        CONSOLE.print(f"[bold green]Wrote {len(scene.image_names)} feature maps to {self.output_dir}[/]")


Commands = Union[
    Annotated[Synth, tyro.conf.subcommand(name="synth")],
    Annotated[Masks, tyro.conf.subcommand(name="masks")],
    Annotated[RenderFeatures, tyro.conf.subcommand(name="render-features")],
]


def entrypoint() -> None:
    """Entry point of the ``clickgs`` console script."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(Commands).main()


if __name__ == "__main__":
    entrypoint()
