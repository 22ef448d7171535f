"""``mlcycle embeddings``: the static embeddings a transform's ``embeddings`` group reads.

``distill`` makes them once from the shipped MiniLM (TensorFlow, about half a minute
on two idle cores) into the artifact store the featurizer, trainer and inference
service share; run again, it finds them and does nothing.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlcycle.cli.context import console, fail, settings_for
from mlcycle.common.errors import MlcycleError

embeddings_app = typer.Typer(help="Static embeddings distilled from the pre-trained MiniLM.")


@embeddings_app.command()
def distill(
    quiet: Annotated[bool, typer.Option(help="Print only the artifact id.")] = False,
) -> None:
    """Distill static embeddings from the shipped MiniLM into the artifact store (once).

    Needs the trainer extra (TensorFlow and keras-hub). The artifact lands under
    ``<artifacts_dir>/embeddings/<id>/`` as a Model2Vec model directory, and becomes the
    one transforms with ``embeddings.enabled`` are fitted with.
    """
    from mlcycle.trainer.distill import ensure

    settings = settings_for("embeddings", interactive=True)
    root = settings.featurizer.artifacts_dir
    try:
        done = ensure(root, None if quiet else console.print)
    except MlcycleError as exc:
        fail(exc)
    if quiet:
        print(done.ident)
        return
    if done.cached:
        console.print(f"embeddings {done.ident} already in {root}: nothing to do")
    else:
        console.print(f"distilled embeddings {done.ident} in {done.seconds:.0f} s into {root}")
