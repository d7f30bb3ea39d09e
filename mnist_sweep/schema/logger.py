"""The `logger` group: where a run's figures are tracked besides its run folder
(mnist_sweep/track/)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mnist_sweep.schema.base import Section


class NoLogger(Section):
    kind: Literal["none"]


class TensorBoard(Section):
    kind: Literal["tensorboard"]


class MLflow(Section):
    kind: Literal["mlflow"]
    # A folder, a database URL or an http(s):// tracking server.
    tracking_uri: Annotated[str, Field(min_length=1)]
    # null: the sweep's study name, else a default.
    experiment: Annotated[str, Field(min_length=1)] | None
    log_checkpoint: bool  # checkpoint.pt as an artifact too


Logger = Annotated[NoLogger | TensorBoard | MLflow, Field(discriminator="kind")]
